"""MedPLIB-7b-2e inference port (torch + transformers 5, no deepspeed, no flash-attn).

Spec: ``../shared/design/medplib-model.md``. Entry points:

* `loader.load_medplib(checkpoint, clip, sam, device)` -> `LoadedMedplib` (model, tokenizer,
  config, load report);
* `chat.ChatSession(loaded, image).ask(question, regions=..., on_token=..., cancel=...)`;
* `layout.check_layout()` (full size on the meta device, no weights);
* `tiny.make_tiny(folder)` (tiny checkpoints with the real layout, for tests);
* `selection.MedplibSettings` (where the weights are) and `notice.MEDPLIB_NOTICE`.

Nothing here downloads anything: the Hugging Face libraries are put in offline mode.
"""

import os as _os

_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from .notice import MEDPLIB_NOTICE  # noqa: E402,F401
from .selection import WEIGHTS_HELP, MedplibSettings  # noqa: E402,F401
