"""The project folder format: scan reference, labels, label map, prompts with their masks, chat.

A project is a folder (by convention ``name.medplib``)::

    project.json            the commit point: metadata, labels, prompts, chat, file names
    labels-000007.npz       the label array (uint16 [k, j, i], zlib-compressed)
    prompts-000007.npz      every prompt's mask, cropped to its bounding box and bit-packed

Saving writes the array files under a new generation number, then replaces ``project.json``
atomically; only then are older generations removed. A kill at any moment leaves the previous
complete project (or the new one), never a mix.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..annotation.kinds import PromptKind, PromptStatus
from ..annotation.labels import LabelSet
from ..errors import MedplibError
from ..export.atomic import atomic_path, atomic_write_text
from ..pacs.urls import is_url

PROJECT_FORMAT = "medplib-studio-project/1"
PROJECT_FILE = "project.json"
PROJECT_SUFFIX = ".medplib"


class ProjectError(MedplibError):
    """A project folder could not be read or written; the message names the path and reason."""


@dataclass
class PromptRecord:
    """One segmentation request: what was drawn, the mask it produced and where it came from.

    ``mask`` is bool, 2D (one slice: ``orientation``/``index``) or 3D (propagation, on the
    scan's [k, j, i] grid); orientation "stored" names the scan's own slice ``index`` along k
    (x = i, y = j), the plane batch prompts are given in.
    """

    id: int
    kind: PromptKind
    orientation: str
    index: int
    prompt: dict[str, Any]
    provenance: dict[str, Any]
    mask: np.ndarray | None = None
    status: PromptStatus = PromptStatus.PROPOSED
    label_value: int | None = None
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "orientation": self.orientation,
            "index": self.index, "prompt": self.prompt, "provenance": self.provenance,
            "status": self.status, "label_value": self.label_value, "time": self.time,
            "mask_pixels": int(np.count_nonzero(self.mask)) if self.mask is not None else 0,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], mask: np.ndarray | None) -> "PromptRecord":
        """Raises KeyError, TypeError or ValueError for an entry that is not a prompt record."""
        value = d.get("label_value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"label_value {value!r} is not a label value")
        for key in ("prompt", "provenance"):
            if not isinstance(d.get(key, {}), dict):
                raise ValueError(f"{key} is not a mapping")
        return cls(id=int(d["id"]), kind=PromptKind(d.get("kind", "segment")),
                   orientation=str(d.get("orientation", "axial")), index=int(d.get("index", 0)),
                   prompt=dict(d.get("prompt", {})), provenance=dict(d.get("provenance", {})),
                   mask=mask, status=PromptStatus(d.get("status", "proposed")),
                   label_value=value, time=str(d.get("time", "")))


@dataclass
class Project:
    """Everything needed to reopen a session exactly where it was left."""

    scan: dict[str, Any]  # {"path", "series", "kind", "series_instance_uid", "shape_kji", ...}
    labels: LabelSet
    label_array: np.ndarray  # uint16 [k, j, i]
    prompts: list[PromptRecord] = field(default_factory=list)
    chat: list[dict[str, Any]] = field(default_factory=list)  # filled by the chat panel
    view: dict[str, Any] = field(default_factory=dict)  # active label, window, slices, layout
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # on reading: what was damaged, what was kept


def scan_reference(volume, path: str, series: str | None = None) -> dict[str, Any]:
    """The scan reference stored in a project: where to reload it and how to recognise it."""
    src = volume.source
    return {
        "path": (path if is_url(path) else str(Path(path).resolve())) if path else "",  # a PACS series URL as is
        "series": series,
        "kind": src.kind if src else None,
        "series_instance_uid": src.series_instance_uid if src else None,
        "shape_kji": list(volume.shape),
        "spacing": [float(s) for s in volume.spacing],
        "origin": [float(o) for o in volume.origin],
        "modality": volume.modality,
    }


def _pack_mask(mask: np.ndarray) -> dict[str, np.ndarray]:
    """A bool mask as its bounding-box crop, bit-packed (prompt masks are mostly empty)."""
    m = np.asarray(mask, dtype=bool)
    lo, hi = [], []
    for ax in range(m.ndim):
        hit = np.flatnonzero(m.any(axis=tuple(a for a in range(m.ndim) if a != ax)))
        lo.append(int(hit[0]) if hit.size else 0)
        hi.append(int(hit[-1]) + 1 if hit.size else 0)
    crop = m[tuple(slice(a, b) for a, b in zip(lo, hi))]
    return {"shape": np.array(m.shape), "offset": np.array(lo), "box": np.array(crop.shape),
            "bits": np.packbits(crop.reshape(-1))}


def unpack_mask(shape, offset, box, bits) -> np.ndarray:
    out = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    n = int(np.prod(box)) if len(box) else 0
    if n and bits.size:
        crop = np.unpackbits(bits)[:n].astype(bool).reshape(tuple(int(b) for b in box))
        out[tuple(slice(int(o), int(o) + int(b)) for o, b in zip(offset, box))] = crop
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray], chunk: int = 1 << 20) -> None:
    """A compressed .npz (readable by `numpy.load`) written atomically, in 1 MiB slices of
    memory: no whole-array byte copy, so the GIL is held only briefly (GUI stays fluid)."""
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(arr))
                    flat = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
                    for start in range(0, len(flat), chunk):
                        fh.write(flat[start:start + chunk])


def save_project(folder: str | Path, project: Project) -> Path:
    """Write ``project`` into ``folder`` (created if needed); returns the project.json path."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        gen = _current_generation(folder) + 1
        labels_name = f"labels-{gen:06d}.npz"
        prompts_name = f"prompts-{gen:06d}.npz"
        arr = np.ascontiguousarray(project.label_array, dtype=np.uint16)
        _write_npz(folder / labels_name, {"labels": arr})
        packed: dict[str, np.ndarray] = {}
        for rec in project.prompts:
            if rec.mask is not None:
                for key, val in _pack_mask(rec.mask).items():
                    packed[f"p{rec.id}_{key}"] = val
        _write_npz(folder / prompts_name, packed)
        doc = {
            "format": PROJECT_FORMAT,
            "software": f"medplib-studio {__version__}",
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "generation": gen,
            "scan": project.scan,
            "labels": project.labels.to_list(),
            "label_file": labels_name,
            "label_shape_kji": list(arr.shape),
            "prompt_file": prompts_name,
            "prompts": [rec.to_json() for rec in project.prompts],
            "chat": project.chat,
            "view": project.view,
            "meta": project.meta,
        }
        target = folder / PROJECT_FILE
        atomic_write_text(target, json.dumps(doc, indent=1, default=_json_default))
    except OSError as exc:
        raise ProjectError(f"{folder}: could not save the project ({exc.strerror or exc})") from exc
    _remove_old_generations(folder, keep=(labels_name, prompts_name))
    return target


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _current_generation(folder: Path) -> int:
    try:
        return max(int(json.loads((folder / PROJECT_FILE).read_text()).get("generation", 0)), 0)
    except (OSError, ValueError, AttributeError, TypeError, OverflowError):
        return 0


def _remove_old_generations(folder: Path, keep: tuple[str, ...]) -> None:
    for pattern in ("labels-*.npz", "prompts-*.npz"):
        for p in folder.glob(pattern):
            if p.name not in keep:
                try:
                    p.unlink()
                except OSError:
                    pass


def project_folder(path: str | Path) -> Path:
    """The project folder for ``path`` (the folder itself or its project.json)."""
    p = Path(path)
    return p.parent if p.name == PROJECT_FILE else p


def is_project(path: str | Path) -> bool:
    return (project_folder(path) / PROJECT_FILE).is_file()
