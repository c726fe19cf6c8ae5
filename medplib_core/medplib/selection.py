"""Where the MedPLIB weights are: settings keys, environment variables, command-line flags.

Nothing is ever downloaded. Without weights, `MedplibSettings.availability` returns a message
that says where to put them; the app keeps using LiteMedSAM meanwhile.
Precedence: command line, then environment, then the saved settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ENV = {"checkpoint": "MEDPLIB_CHECKPOINT", "clip": "MEDPLIB_CLIP", "sam": "MEDPLIB_SAM",
       "device": "MEDPLIB_DEVICE"}
SETTINGS_KEYS = {"checkpoint": "medplib/checkpoint", "clip": "medplib/clip",
                 "sam": "medplib/sam", "device": "medplib/device"}

WEIGHTS_HELP = (
    "MedPLIB needs three local downloads (nothing is fetched at run time):\n"
    "  1. the checkpoint folder Huangxs/MedPLIB-7b-2e (config.json, tokenizer files and the\n"
    "     *.safetensors shards, about 24 GB);\n"
    "  2. the CLIP folder openai/clip-vit-large-patch14-336;\n"
    "  3. the SAM-Med2D weights file sam-med2d_b.pth (OpenGVLab/SAM-Med2D).\n"
    "(2 and 3 are only read for tensors the checkpoint lacks; the released checkpoint\n"
    "carries its own CLIP and SAM-Med2D weights.)\n"
    "Point MedPLIB Studio at them in Settings > MedPLIB (keys medplib/checkpoint, medplib/clip,\n"
    "medplib/sam, medplib/device), or with the environment variables MEDPLIB_CHECKPOINT,\n"
    "MEDPLIB_CLIP, MEDPLIB_SAM and MEDPLIB_DEVICE (auto, cpu, cuda), or on the command line\n"
    "with --checkpoint, --clip, --sam and --device. A GPU with about 26 GB of memory is\n"
    "recommended; on a CPU the model runs in fp32 (about 47 GB of RAM) and slowly.\n"
    "Until then segmentation uses LiteMedSAM and the chat is unavailable."
)


@dataclass
class MedplibSettings:
    checkpoint: str | None = None
    clip: str | None = None
    sam: str | None = None
    device: str = "auto"

    @classmethod
    def from_sources(cls, settings: Mapping[str, Any] | None = None, args: Any = None,
                     env: Mapping[str, str] | None = None) -> "MedplibSettings":
        """Combine saved settings, environment and parsed command-line arguments."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field_name in ("checkpoint", "clip", "sam", "device"):
            val = None
            if args is not None:
                val = getattr(args, field_name, None)
            if not val:
                val = env.get(ENV[field_name])
            if not val and settings is not None:
                val = settings.get(SETTINGS_KEYS[field_name])
            if val:
                values[field_name] = str(val)
        return cls(**values)

    def problems(self) -> list[str]:
        """What is missing or wrong, in words (empty when everything looks usable)."""
        out = []
        if not self.checkpoint:
            out.append("no MedPLIB checkpoint folder is configured")
        else:
            ck = Path(self.checkpoint)
            if not ck.is_dir():
                out.append(f"the checkpoint folder {ck} does not exist")
            elif not (ck / "config.json").is_file():
                out.append(f"{ck} has no config.json (is it the MedPLIB-7b-2e folder?)")
            elif not any(ck.glob("*.safetensors")) and not any(ck.glob("*.bin")):
                out.append(f"{ck} has no weight shards (*.safetensors)")
        if self.clip and not (Path(self.clip) / "config.json").is_file():
            out.append(f"the CLIP folder {self.clip} has no config.json")
        if self.sam and not Path(self.sam).is_file():
            out.append(f"the SAM-Med2D file {self.sam} does not exist")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            out.append(f"unknown device {self.device!r} (use auto, cpu or cuda)")
        return out

    def availability(self) -> tuple[bool, str]:
        """(usable, message); the message explains where to put the weights when unusable."""
        probs = self.problems()
        if not probs:
            return True, f"MedPLIB weights found in {self.checkpoint}"
        return False, "not available: " + "; ".join(probs) + ".\n\n" + WEIGHTS_HELP
