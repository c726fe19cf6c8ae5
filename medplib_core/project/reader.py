"""Reading a project folder defensively: what is damaged is named, what is intact is kept.

Anything that would make the project meaningless (no project.json, not JSON, another format,
a format version from the future, a missing or damaged label array) raises `ProjectError`
naming the file and the problem. Damage the project survives (a bad prompt entry, a missing
prompt-mask file, a mask that does not fit, a chat that is not a list) is repaired by leaving
that part out, and ``Project.notes`` says what was left out and what was kept.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..annotation.labels import Label, LabelSet
from ..limits import voxel_excess
from .format import (PROJECT_FILE, PROJECT_FORMAT, Project, ProjectError, PromptRecord,
                     project_folder, unpack_mask)

FORMAT_PREFIX = "medplib-studio-project/"
FORMAT_VERSION = int(PROJECT_FORMAT.rsplit("/", 1)[1])
_ARCHIVE_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error)


def load_project(path: str | Path) -> Project:
    """Read a project folder (or its project.json); raises `ProjectError` with the reason."""
    folder = project_folder(path)
    pj = folder / PROJECT_FILE
    try:
        doc = json.loads(pj.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProjectError(f"{folder}: not a MedPLIB Studio project (no {PROJECT_FILE})") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise ProjectError(f"{pj}: unreadable project file ({exc})") from exc
    if not isinstance(doc, dict):
        raise ProjectError(f"{pj}: unreadable project file (a JSON {type(doc).__name__}, "
                           "not an object)")
    _check_format(pj, doc.get("format"))
    notes: list[str] = []
    arr = _label_array(folder, doc)
    prompts = _prompts(folder, doc, arr.shape, notes)
    return Project(scan=_mapping(doc, "scan", notes), labels=_labels(doc.get("labels"), notes),
                   label_array=arr, prompts=prompts, chat=_chat(doc.get("chat"), notes),
                   view=_mapping(doc, "view", notes), meta=_mapping(doc, "meta", notes),
                   notes=notes)


def _check_format(pj: Path, fmt: Any) -> None:
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
        raise ProjectError(f"{pj}: not a MedPLIB Studio project file (format {fmt!r})")
    try:
        version = int(fmt[len(FORMAT_PREFIX):])
    except ValueError:
        raise ProjectError(f"{pj}: unknown project format {fmt!r}") from None
    if version > FORMAT_VERSION:
        raise ProjectError(f"{pj}: written by a newer MedPLIB Studio (format /{version}); this "
                           f"version reads format /{FORMAT_VERSION} only: update the application "
                           "to open it")
    if version < 1:
        raise ProjectError(f"{pj}: unknown project format {fmt!r}")


def _member_file(folder: Path, doc: dict, key: str) -> Path | None:
    """The file ``doc[key]`` names, which must be a plain file name inside the folder."""
    name = doc.get(key)
    if name in (None, ""):
        return None
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise ProjectError(f"{folder / PROJECT_FILE}: {key} {name!r} is not a file name inside "
                           "the project folder")
    return folder / name


def _npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Declared shape and dtype of every array in an .npz, read from the member headers only."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, _, dtype = read(fh)
            out[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    return out


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz after checking the declared sizes against the voxel limit."""
    try:
        for name, (shape, dtype) in _npz_shapes(path).items():
            if dtype.hasobject:
                raise ProjectError(f"{path}: the {what} holds Python objects, not arrays")
            excess = voxel_excess(shape, dtype.itemsize, "values")
            if excess:
                raise ProjectError(f"{path}: the {what} {excess}")
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except _ARCHIVE_ERRORS as exc:
        raise ProjectError(f"{path}: the {what} is missing or damaged "
                           f"({type(exc).__name__}: {exc})") from exc


def _label_array(folder: Path, doc: dict) -> np.ndarray:
    path = _member_file(folder, doc, "label_file")
    if path is None:
        raise ProjectError(f"{folder}: the label data is missing or damaged (no label_file)")
    arrays = _read_npz(path, "label data")
    arr = arrays.get("labels")
    if arr is None or arr.ndim != 3 or arr.dtype.kind not in "iub":
        raise ProjectError(f"{path}: the label data is missing or damaged (no 3D integer "
                           "'labels' array)")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise ProjectError(f"{path}: the label data is damaged (values outside 0..65535)")
    expected = doc.get("label_shape_kji", list(arr.shape))
    if list(arr.shape) != expected:
        raise ProjectError(f"{folder}: label array shape {arr.shape} does not match the project "
                           f"file ({expected})")
    return np.ascontiguousarray(arr, dtype=np.uint16)


def _prompts(folder: Path, doc: dict, grid: tuple, notes: list[str]) -> list[PromptRecord]:
    entries = doc.get("prompts", [])
    if not isinstance(entries, list):
        notes.append("the prompt list is damaged: no prompts kept")
        return []
    masks: dict[str, np.ndarray] = {}
    try:
        path = _member_file(folder, doc, "prompt_file")
    except ProjectError as exc:
        notes.append(f"{exc}: prompts kept without their masks")
        path = None
    if path is not None:
        if not path.is_file():
            notes.append(f"{path.name} is missing: {len(entries)} prompt(s) kept without "
                         "their masks")
        else:
            try:
                masks = _read_npz(path, "prompt masks")
            except ProjectError as exc:
                notes.append(f"{exc}: {len(entries)} prompt(s) kept without their masks")
    out, seen, lost = [], set(), []
    for n, d in enumerate(entries, start=1):
        try:
            rec = PromptRecord.from_json(d, None)
            if rec.id in seen:
                raise ValueError(f"id {rec.id} repeated")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            notes.append(f"prompt entry {n} is damaged ({type(exc).__name__}: {exc}): left out")
            continue
        seen.add(rec.id)
        rec.mask = _mask_of(masks, rec.id, grid)
        if rec.mask is None and isinstance(d, dict) and d.get("mask_pixels") and masks:
            lost.append(rec.id)
        out.append(rec)
    if lost:
        notes.append(f"the masks of prompt(s) {', '.join(map(str, lost[:10]))} are missing or "
                     "damaged: those prompts were kept without masks")
    return out


def _mask_of(masks: dict[str, np.ndarray], pid: int, grid: tuple) -> np.ndarray | None:
    key = f"p{pid}_"
    parts = [masks.get(key + k) for k in ("shape", "offset", "box", "bits")]
    if any(p is None for p in parts):
        return None
    shape, offset, box, bits = parts
    try:
        shape, offset, box = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (shape, offset, box))
        if not (len(shape) == len(offset) == len(box) and len(shape) in (2, 3)):
            return None
        if np.any(shape <= 0) or np.any(offset < 0) or np.any(box < 0) or \
                np.any(offset + box > shape) or int(np.prod(shape)) > max(int(np.prod(grid)), 1) or \
                bits.dtype != np.uint8 or bits.size * 8 < int(np.prod(box)):
            return None
        return unpack_mask(shape, offset, box, bits)
    except (TypeError, ValueError, OverflowError):
        return None


def _labels(items: Any, notes: list[str]) -> LabelSet:
    if not isinstance(items, list):
        if items is not None:
            notes.append("the label list is damaged: labels get generic names")
        return LabelSet()
    kept: list[Label] = []
    for n, d in enumerate(items, start=1):
        try:
            lab = Label.from_dict(d)
            if not 0 < lab.value < 65536 or len(lab.color) != 3 or \
                    any(not 0 <= c <= 255 for c in lab.color) or \
                    any(k.value == lab.value for k in kept):
                raise ValueError("value or colour out of range, or repeated")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            notes.append(f"label entry {n} is damaged ({exc}): left out")
            continue
        kept.append(lab)
    return LabelSet(kept)


def _chat(chat: Any, notes: list[str]) -> list[dict[str, Any]]:
    if chat is None:
        return []
    if not isinstance(chat, list):
        notes.append("the chat is damaged: not restored")
        return []
    kept = [m for m in chat if isinstance(m, dict)]
    if len(kept) != len(chat):
        notes.append(f"{len(chat) - len(kept)} damaged chat message(s) left out")
    return kept


def _mapping(doc: dict, key: str, notes: list[str]) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        notes.append(f"the project's {key!r} entry is damaged: ignored")
        return {}
    return dict(value)
