"""Finding and reading the weight files: checkpoint shards, the CLIP folder, the SAM .pth.

Shards are found by reading every ``*.safetensors`` header (spec §3.1: the released index
names ``.bin`` files that are not there), with ``*.bin`` shards as a fallback. The SAM-Med2D
``.pth`` may pickle an optimizer object next to ``'model'`` (§3.3): it is read with
torch's weights-only unpickler, with every non-allowlisted class mapped to an inert stub, so
no code from the file runs and only the tensors are kept.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from medplib_core.errors import LoadError

_ST_DTYPES = {
    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


@dataclass
class TensorEntry:
    file: Path
    dtype: str  # safetensors dtype code ("BF16", ...) or torch dtype name for .bin
    shape: tuple[int, ...]


@dataclass
class CheckpointFiles:
    """Key -> file map of a checkpoint folder, built from the files themselves."""

    folder: Path
    fmt: str  # "safetensors" or "bin"
    shards: list[Path]
    entries: dict[str, TensorEntry]
    notes: list[str] = field(default_factory=list)
    extra_files: dict[str, bool] = field(default_factory=dict)

    def dtype_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries.values():
            out[e.dtype] = out.get(e.dtype, 0) + 1
        return out

    def by_file(self, keys) -> dict[Path, list[str]]:
        out: dict[Path, list[str]] = {}
        for k in keys:
            out.setdefault(self.entries[k].file, []).append(k)
        return out


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """Tensor names, dtypes and shapes from a safetensors header (no tensor data read)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError(f"header length {n} is implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as exc:
        raise LoadError(path, f"not a readable safetensors file: {exc}") from exc
    return {k: TensorEntry(path, v["dtype"], tuple(v["shape"]))
            for k, v in header.items() if k != "__metadata__"}


def scan_checkpoint(folder: str | Path) -> CheckpointFiles:
    """Find the weights of a MedPLIB checkpoint folder (safetensors first, then .bin)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError(folder, "the checkpoint folder does not exist")
    notes: list[str] = []
    shards = sorted(folder.glob("*.safetensors"))
    bins = sorted(p for p in folder.glob("*.bin") if p.name != "training_args.bin")
    entries: dict[str, TensorEntry] = {}
    fmt = "safetensors"
    if shards:
        for s in shards:
            for k, e in read_safetensors_header(s).items():
                if k in entries:
                    notes.append(f"{k} appears in {entries[k].file.name} and {s.name}; using the first")
                    continue
                entries[k] = e
        if bins:
            notes.append(f"{len(bins)} .bin file(s) present too; the safetensors shards are used")
    elif bins:
        fmt = "bin"
        shards = bins
        for b in bins:
            sd = _load_bin(b)
            for k, t in sd.items():
                entries.setdefault(k, TensorEntry(b, str(t.dtype).replace("torch.", ""), tuple(t.shape)))
            del sd
    else:
        raise LoadError(folder, "no weight files (*.safetensors or *.bin) in the checkpoint folder",
                        "download Huangxs/MedPLIB-7b-2e into this folder")
    for index in sorted(folder.glob("*.index.json")):
        notes.append(_check_index(index, entries))
    extra = {name: (folder / name).is_file() for name in (
        "config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", "tokenizer.json")}
    return CheckpointFiles(folder, fmt, shards, entries, notes, extra)


def _check_index(index: Path, entries: dict[str, TensorEntry]) -> str:
    """Describe how an index file relates to the shards actually found (it is not trusted)."""
    try:
        wm = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, ValueError) as exc:
        return f"{index.name}: unreadable ({exc}); ignored"
    named = sorted(set(wm.values()))
    absent = [n for n in named if not (index.parent / n).is_file()]
    keys_missing = len(set(wm) - set(entries))
    msg = f"{index.name} lists {len(wm)} tensors in {len(named)} file(s)"
    if absent:
        msg += f"; {len(absent)} named file(s) do not exist (e.g. {absent[0]})"
    if keys_missing:
        msg += f"; {keys_missing} indexed tensors are not in any shard"
    return msg + "; the index is ignored, shards were found from their headers"


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a load error
        raise LoadError(path, f"cannot be read as a weights-only torch file: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise LoadError(path, "does not contain a state dict")
    return sd


def iter_tensors(files: CheckpointFiles, keys: list[str], device: str | torch.device = "cpu"
                 ) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """Yield (file, {key: tensor}) one shard at a time for the requested keys."""
    for path, names in files.by_file(keys).items():
        if files.fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device=str(device)) as f:
                yield path, {k: f.get_tensor(k) for k in names}
        else:
            sd = _load_bin(path)
            yield path, {k: sd[k].to(device) for k in names}
            del sd


# -- CLIP folder ---------------------------------------------------------------------------------

def clip_folder_tensors(folder: str | Path) -> tuple[dict[str, TensorEntry], str]:
    """Vision-tower keys of a local CLIP folder, renamed to the sub-keys after ``vision_model.``."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    fmt = "safetensors"
    out: dict[str, TensorEntry] = {}
    if files:
        for f in files:
            for k, e in read_safetensors_header(f).items():
                sub = _vision_subkey(k)
                if sub is not None:
                    out[sub] = TensorEntry(f, e.dtype, e.shape)
    else:
        fmt = "bin"
        for f in sorted(folder.glob("*.bin")):
            for k, t in _load_bin(f).items():
                sub = _vision_subkey(k)
                if sub is not None:
                    out[sub] = TensorEntry(f, str(t.dtype), tuple(t.shape))
    return out, fmt


def _vision_subkey(key: str) -> str | None:
    if "vision_model." in key:
        return key.split("vision_model.", 1)[1]
    return None


def read_clip_tensors(entries: dict[str, TensorEntry], fmt: str, subkeys: list[str],
                      device="cpu") -> dict[str, torch.Tensor]:
    """Read some CLIP-folder tensors by sub-key."""
    out: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for s in subkeys:
        by_file.setdefault(entries[s].file, []).append(s)
    for path, subs in by_file.items():
        if fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device=str(device)) as f:
                names = {_vision_subkey(k): k for k in f.keys() if _vision_subkey(k) in subs}
                out.update({s: f.get_tensor(names[s]) for s in subs})
        else:
            sd = _load_bin(path)
            names = {_vision_subkey(k): k for k in sd if _vision_subkey(k) in subs}
            out.update({s: sd[names[s]].to(device) for s in subs})
    return out


# -- SAM-Med2D .pth ------------------------------------------------------------------------------

class _Skipped:
    """Stand-in for any pickled object that is not a tensor container (e.g. an optimizer)."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _plain_dict(*args, **kwargs) -> dict:
    """Replacement for ``collections.defaultdict``: an ordinary dict (its factory is dropped)."""
    return {}


# Harmless containers that pickles of optimizers reference; everything else becomes a stub.
_CONTAINERS = {"builtins.dict": dict, "builtins.list": list, "builtins.set": set,
               "builtins.frozenset": frozenset, "builtins.tuple": tuple,
               "collections.defaultdict": _plain_dict}


def load_sam_pth(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """The SAM state dict of ``sam-med2d_b.pth`` and what else the file held."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(path, "the SAM-Med2D weights file does not exist",
                        "expected sam-med2d_b.pth from OpenGVLab/SAM-Med2D")
    info: dict[str, object] = {"path": str(path)}
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # noqa: BLE001
        raise LoadError(path, f"not a torch checkpoint: {exc}") from exc
    info["skipped_globals"] = [u for u in unsafe if u not in _CONTAINERS]
    stubs = [(_CONTAINERS[name], name) if name in _CONTAINERS
             else (type(f"_Skipped_{i}", (_Skipped,), {}), name) for i, name in enumerate(unsafe)]
    try:
        with torch.serialization.safe_globals(stubs):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001
        raise LoadError(path, f"cannot be read safely: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        info["top_level_keys"] = sorted(str(k) for k in obj)
        sd = obj["model"]
    elif isinstance(obj, dict):
        info["top_level_keys"] = ["<state dict>"]
        sd = obj
    else:
        raise LoadError(path, f"holds a {type(obj).__name__}, not a state dict")
    info["optimizer_pickled"] = isinstance(obj, dict) and "optimizer" in obj and bool(unsafe)
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("image_encoder.") for k in sd):
        raise LoadError(path, "no image_encoder.* tensors; this is not a SAM-Med2D state dict")
    return sd, info
