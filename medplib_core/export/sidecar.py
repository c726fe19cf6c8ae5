"""The JSON sidecar written beside every label export: labels, colours, provenance, geometry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..annotation.labels import Label, LabelSet
from ..checksums import file_sha256
from ..errors import ExportError, MedplibError
from ..volume import Volume
from .atomic import AtomicGroup, atomic_write_text

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
    try:
        atomic_write_text(path, json.dumps(data, indent=1))
    except OSError as exc:
        raise ExportError(f"{path}: could not write the sidecar ({exc.strerror or exc})") from exc
    return path


def read_sidecar(label_path: str | Path) -> dict[str, Any] | None:
    """Our sidecar beside a label file as a dict, or None when absent or unreadable."""
    path = sidecar_path(label_path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None


def commit_labels(path: str | Path, write: Callable[[Path], None], sidecar: dict[str, Any],
                  what: str = "label map",
                  more: Sequence[tuple[Path, Callable[[Path], None]]] = ()) -> list[Path]:
    """Write a label file (``write(tmp)``), any ``more`` files and the JSON sidecar as one commit.

    Everything is written and flushed first; then the label file is renamed into place, then
    the extra files, then the sidecar, which records the label file's SHA-256: a kill between
    two renames leaves a sidecar that does not match its label file, which `sidecar_matches`
    detects (the importers then ignore its names). Any write failure (disk full, read-only
    folder) raises `ExportError` naming the file, and leaves every target as it was.
    """
    path = Path(path)
    side = sidecar_path(path)
    current = path
    try:
        with AtomicGroup() as group:
            tmp = group.add(path)
            write(tmp)
            for extra, fn in more:
                current = extra
                fn(group.add(extra))
            current = side
            data = dict(sidecar, label_file=path.name, label_sha256=file_sha256(tmp))
            group.add(side).write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"{current}: could not write the {what} "
                          f"({exc.strerror or exc})") from exc
    except MedplibError:
        raise
    except Exception as exc:  # noqa: BLE001 - a writer library's own error on our data
        raise ExportError(f"{path}: could not write the {what} ({type(exc).__name__}: {exc})") \
            from exc
    return [path, *(p for p, _ in more), side]


def sidecar_matches(label_path: str | Path) -> bool | None:
    """True when the sidecar records this label file's checksum, False when it records another
    (an export was cut between its two renames), None when there is no checksum to compare."""
    p = Path(label_path)
    try:
        data = json.loads(sidecar_path(p).read_text(encoding="utf-8"))
        recorded = data.get("label_sha256") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, str):
        return None
    try:
        return file_sha256(p) == recorded
    except OSError:
        return None


def read_label_names(label_path: str | Path) -> LabelSet | None:
    """Labels from our sidecar, or from a ``{"labels_present": {"1": "spleen"}}`` style JSON."""
    p = Path(label_path)
    candidates = [sidecar_path(p)]
    base = str(sidecar_path(p))[: -len(".json")]
    candidates.append(Path(base + "_labels.json"))
    if sidecar_matches(p) is False:
        return None  # the sidecar belongs to another version of this label file
    for cand in candidates:
        if not cand.is_file():
            continue
        try:
            data = json.loads(cand.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                continue
            if isinstance(data.get("labels"), list):
                return LabelSet([Label.from_dict(d) for d in data["labels"]])
            if isinstance(data.get("labels_present"), dict):
                ls = LabelSet()
                for key, name in sorted(data["labels_present"].items(),
                                        key=lambda kv: int(kv[0])):
                    ls.add(str(name), value=int(key))
                return ls
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue  # a damaged sidecar: the labels keep generic names
    return None
