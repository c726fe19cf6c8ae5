"""The JSON sidecar written beside every label export: labels, colours, provenance, geometry."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..annotation.labels import Label, LabelSet
from ..volume import Volume
from .atomic import atomic_write_text

SIDECAR_FORMAT = "medplib-studio-labels/1"


def sidecar_path(label_path: str | Path) -> Path:
    """``liver.nii.gz`` -> ``liver.json``; ``mask.png`` -> ``mask.json``."""
    p = Path(label_path)
    name = p.name
    for ext in (".nii.gz", ".nii", ".dcm", ".png"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_name(name + ".json")


def build_sidecar(labels: LabelSet, volume: Volume, counts: dict[int, int] | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    voxel_ml = volume.voxel_volume_ml  # None without millimetres (a PNG): no millilitres
    items = []
    for lab in labels:
        d = lab.to_dict()
        if counts is not None:
            d["voxels"] = int(counts.get(lab.value, 0))
            d["volume_ml"] = None if voxel_ml is None else round(d["voxels"] * voxel_ml, 4)
        items.append(d)
    out = {
        "format": SIDECAR_FORMAT,
        "software": f"medplib-studio {__version__}",
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": volume.source.to_dict() if volume.source else None,
        "geometry": volume.geometry_dict(),
        "labels": items,
    }
    if extra:
        out.update(extra)
    return out


def write_sidecar(label_path: str | Path, data: dict[str, Any]) -> Path:
    path = sidecar_path(label_path)
    atomic_write_text(path, json.dumps(data, indent=1))
    return path


def read_sidecar(label_path: str | Path) -> dict[str, Any] | None:
    """Our sidecar beside a label file as a dict, or None when absent or unreadable."""
    path = sidecar_path(label_path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None


def read_label_names(label_path: str | Path) -> LabelSet | None:
    """Labels from our sidecar, or from a ``{"labels_present": {"1": "spleen"}}`` style JSON."""
    p = Path(label_path)
    candidates = [sidecar_path(p)]
    base = str(sidecar_path(p))[: -len(".json")]
    candidates.append(Path(base + "_labels.json"))
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            data = json.loads(cand.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data.get("labels"), list):
            return LabelSet([Label.from_dict(d) for d in data["labels"]])
        if isinstance(data.get("labels_present"), dict):
            ls = LabelSet()
            for key, name in sorted(data["labels_present"].items(), key=lambda kv: int(kv[0])):
                ls.add(str(name), value=int(key))
            return ls
    return None
