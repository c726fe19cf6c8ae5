"""Batch specification: which cases, which engine, which prompts, which outputs.

A spec is a YAML or JSON file (or the same dict from Python)::

    output: runs/liver            # folder for label maps and the run manifest (relative to the spec)
    engine: {name: litemedsam}    # or {name: medplib, checkpoint: ..., clip: ..., sam: ..., device: cuda}
    cases:
      - scans/case01.nii.gz                       # a NIfTI file, a DICOM file or folder, a 2D image
      - {path: scans/ct_series, id: ct01}
      - https://pacs/dicom-web/studies/1.2.3/series/1.2.3.4   # a series on a PACS (DICOMweb)
      - {qido: https://pacs/dicom-web, query: {Modality: CT, StudyDate: [2024-01-01, 2024-06-30]}}
                                                  # every series a QIDO-RS search finds (limit: N)
      - {folder: scans/more, pattern: "*.nii.gz"} # every match becomes a case
      - {csv: cases.csv}                          # a CSV with a `path` column (and optionally `id`)
    prompts: prompts.csv          # boxes / points per case (see prompts_csv.py)
    targets: [liver, spleen]      # text targets to ground (MedPLIB engine): one label each
    propagate: true               # grow each 2D result through the volume
    dicom_seg: false              # also write a DICOM SEG for DICOM cases
    workers: auto                 # processes; auto = one per two CPU cores (one per GPU on GPUs)
    executor: pool                # or ray: the cases on Ray engine actors (see batch/ray_executor.py)
    ray: {address: auto, cpus: 2, gpus: 0, attempts: 3}   # Ray options, all optional (RAY_KEYS)

Every problem is one `SpecError` naming the file, the line (YAML) or key, and the problem:
unknown keys, wrong types, missing files, repeated case ids. Input paths may point anywhere;
``output`` must stay inside the spec's folder unless the caller gives it (``--output`` on the
command line). Output files are named after `safe_name` of the case id, never the raw id.
"""

from __future__ import annotations

import csv
import io
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pacs.urls import is_url
from .prompts_csv import PromptCsvError, PromptRow, read_prompts
from .spec_source import Located, SpecError, parse, read_text

__all__ = ["BatchSpec", "Case", "SpecError", "case_id_for", "load_spec", "safe_name"]

TOP_KEYS = {"output", "engine", "cases", "prompts", "targets", "propagate", "dicom_seg", "workers",
            "executor", "ray"}
EXECUTORS = ("pool", "ray")
# Ray options (batch/ray_executor.py): key -> (types, lowest value, whether the lowest is allowed)
RAY_KEYS = {"address": (str,), "workers": (int, 1, True), "cpus": ((int, float), 0, False),
            "gpus": ((int, float), 0, True), "attempts": (int, 1, True), "window": (int, 1, True),
            "start_timeout_s": ((int, float), 0, False)}
CASE_KEYS = {"path": {"path", "id"}, "folder": {"folder", "pattern"}, "csv": {"csv"},
             "qido": {"qido", "query", "limit"}}
ENGINE_NAMES = ("litemedsam", "medplib")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 4, 4, 2


@dataclass
class Case:
    id: str
    path: Path | str  # a local path, or a DICOMweb series URL (a str: Path would mangle it)

    @property
    def output_name(self) -> str:
        """The file stem this case's outputs get (see `safe_name`)."""
        return safe_name(self.id)


@dataclass
class BatchSpec:
    cases: list[Case]
    output: Path
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "litemedsam"})
    prompts: dict[str, list[PromptRow]] = field(default_factory=dict)  # case id -> rows
    targets: list[str] = field(default_factory=list)
    label_values: dict[str, int] = field(default_factory=dict)  # label name -> value, run-wide
    propagate: bool = False
    dicom_seg: bool = False
    workers: int | str = "auto"
    source: str = "<dict>"
    executor: str = "pool"  # "pool" (processes on this machine) or "ray"
    ray: dict[str, Any] = field(default_factory=dict)  # Ray options (RAY_KEYS), checked

    def prompts_for(self, case_id: str) -> list[PromptRow]:
        return self.prompts.get(case_id, [])


def safe_name(case_id: str) -> str:
    """A file name made from a case id: letters, digits, ``.``, ``_`` and ``-`` only, no
    leading dot, no reserved device name, at most 120 characters (``../../x`` -> ``_.._x``)."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(case_id))
    name = name.lstrip(".").rstrip(". ")[:120] or "case"
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = "_" + name
    return name


def case_id_for(path: Path | str) -> str:
    if is_url(path):
        return str(path).rstrip("/").rsplit("/", 1)[-1]  # the SeriesInstanceUID
    name = path.name
    for ext in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def load_spec(spec: str | Path | dict[str, Any], base: Path | None = None,
              output: str | Path | None = None) -> BatchSpec:
    """Parse a spec file (YAML/JSON) or dict; paths are relative to the spec's folder.

    ``output`` (the command line's ``--output``) replaces the spec's own output folder and may
    lie anywhere; an output folder written in a spec file must stay inside the spec's folder.
    """
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        data, loc = parse(path, read_text(path))
        base = path.resolve().parent
        confine = True
    else:
        data, loc = (dict(spec) if isinstance(spec, dict) else spec), Located("<dict>")
        base = base or Path.cwd()
        confine = False
    if not isinstance(data, dict):
        raise loc.error((), "a batch spec must be a mapping with cases, engine and prompts "
                        f"(got {type(data).__name__})")
    return _build(data, loc, base, confine, output)


def _build(data: dict, loc: Located, base: Path, confine: bool, output) -> BatchSpec:
    unknown = sorted(str(k) for k in data if k not in TOP_KEYS)
    if unknown:
        raise loc.error((unknown[0],), f"unknown key {unknown[0]!r}{_suggest(unknown[0], TOP_KEYS)}"
                        f" (a batch spec has: {', '.join(sorted(TOP_KEYS))})")
    cases = _cases(data.get("cases"), base, loc)
    if not cases:
        raise loc.error(("cases",), "no cases found")
    _check_unique(cases, loc)
    ids = {c.id for c in cases}
    prompts: dict[str, list[PromptRow]] = {}
    if data.get("prompts") is not None:
        rows = _prompt_rows(data["prompts"], base, loc)
        stray = [r for r in rows if r.case not in ids]
        if stray:
            names = ", ".join(map(repr, sorted({r.case for r in stray})[:5]))
            raise loc.error(("prompts",), f"{stray[0].source}: line {stray[0].line}: the prompts "
                            f"name cases that are not in the spec: {names}")
        for r in rows:
            prompts.setdefault(r.case, []).append(r)
    targets = _targets(data.get("targets"), loc)
    engine = _engine(data.get("engine"), loc)
    if targets and engine.get("name") != "medplib":
        raise loc.error(("targets",), "text targets need the MedPLIB engine (engine: {name: "
                        "medplib, ...})")
    if not prompts and not targets:
        raise loc.error((), "give box/point prompts (prompts: FILE.csv) or text targets")
    values: dict[str, int] = {}
    for name in [r.label for rows in prompts.values() for r in rows] + targets:
        values.setdefault(name, len(values) + 1)
    return BatchSpec(cases=cases, output=_output(data.get("output"), output, base, confine, loc),
                     engine=engine, prompts=prompts, targets=targets, label_values=values,
                     propagate=_flag(data, "propagate", loc), dicom_seg=_flag(data, "dicom_seg", loc),
                     workers=_workers(data.get("workers", "auto"), loc), source=loc.source,
                     executor=_executor(data.get("executor"), loc), ray=_ray(data.get("ray"), loc))


def _suggest(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(value: Any, keys: tuple, loc: Located) -> Path:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise loc.error(keys, f"expected a path, got {_short.repr(value)}")
    return Path(value).expanduser()


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p)


def _case_path(base: Path, value: Any, keys: tuple, loc: Located) -> Path | str:
    """A case's scan: a path relative to ``base``, or a series URL as it is."""
    if isinstance(value, str) and is_url(value):
        return _series_url(value, loc.where(keys))
    return _resolve(base, _path(value, keys, loc))


def _series_url(value: str, where: str) -> str:
    from ..pacs import PacsError, parse_series_url

    try:
        return parse_series_url(value).url
    except PacsError as exc:
        raise SpecError(f"{where}: case {value!r}: {exc.reason}"
                        + (f" ({exc.hint})" if exc.hint else "")) from None


def _output(value, override, base: Path, confine: bool, loc: Located) -> Path:
    if override is not None:
        return Path(override).expanduser().resolve()
    out = _resolve(base, _path(value if value is not None else "batch-output", ("output",), loc))
    if confine:
        resolved, root = out.resolve(), base.resolve()
        if resolved != root and root not in resolved.parents:
            raise loc.error(("output",), f"the output folder {resolved} is outside the spec's "
                            f"folder {root}; give it on the command line (--output) instead")
        return resolved
    return out


def _flag(data: dict, key: str, loc: Located) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise loc.error((key,), f"expected true or false, got {_short.repr(value)}")
    return value


def _workers(value: Any, loc: Located) -> int | str:
    if value in (None, "auto"):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise loc.error(("workers",), f"expected auto or a number of processes (1..1024), got "
                        f"{_short.repr(value)}")
    return value


def _executor(value: Any, loc: Located) -> str:
    if value is None:
        return "pool"
    name = str(value).lower() if isinstance(value, str) else None
    if name not in EXECUTORS:
        raise loc.error(("executor",), f"unknown executor {_short.repr(value)}"
                        f"{_suggest(str(value), EXECUTORS)}; choose {' or '.join(EXECUTORS)}")
    return name


def _ray(value: Any, loc: Located) -> dict[str, Any]:
    """The Ray options, each of its type and range (a null option is left out)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise loc.error(("ray",), f"expected a mapping of Ray options, got {_short.repr(value)}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in RAY_KEYS:
            raise loc.error(("ray", str(key)), f"unknown Ray option {str(key)!r}{_suggest(key, RAY_KEYS)}"
                            f" (Ray options: {', '.join(sorted(RAY_KEYS))})")
        if v is None:
            continue
        types, *bound = RAY_KEYS[key]
        if key == "address":
            ok = isinstance(v, str) and bool(v.strip())
            want = "a Ray address (auto, local, HOST:PORT or ray://HOST:10001)"
        else:
            low, inclusive = bound
            ok = isinstance(v, types) and not isinstance(v, bool) and (v >= low if inclusive else v > low)
            want = f"{'a whole number' if types is int else 'a number'} {'>=' if inclusive else '>'} {low}"
        if not ok:
            raise loc.error(("ray", key), f"expected {want}, got {_short.repr(v)}")
        out[key] = v.strip() if key == "address" else v
    return out


def _engine(value: Any, loc: Located) -> dict[str, Any]:
    if value is None:
        return {"name": "litemedsam"}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise loc.error(("engine",), f"expected an engine name or mapping, got {_short.repr(value)}")
    engine = {str(k): v for k, v in value.items()}
    name = str(engine.get("name", "litemedsam")).lower()
    if name not in ENGINE_NAMES:
        raise loc.error(("engine", "name"), f"unknown engine {_short.repr(engine.get('name'))}"
                        f"{_suggest(name, ENGINE_NAMES)}; choose {' or '.join(ENGINE_NAMES)}")
    for key, v in engine.items():
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise loc.error(("engine", key), f"expected a single value, got {_short.repr(v)}")
    engine["name"] = name
    return engine


def _targets(value: Any, loc: Located) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise loc.error(("targets",), f"expected a list of names, got {_short.repr(value)}")
    out = []
    for m, t in enumerate(value):
        if not isinstance(t, (str, int, float)) or isinstance(t, bool) or not str(t).strip():
            raise loc.error(("targets", m), f"expected a target name, got {_short.repr(t)}")
        out.append(str(t).strip())
    return out


def _prompt_rows(value: Any, base: Path, loc: Located) -> list[PromptRow]:
    path = _resolve(base, _path(value, ("prompts",), loc))
    try:
        return read_prompts(path)
    except PromptCsvError as exc:
        raise SpecError(f"{loc.where(('prompts',))}: {exc}") from None


def _cases(items: Any, base: Path, loc: Located) -> list[Case]:
    if items is None:
        raise loc.error((), "'cases' is missing (the scans to run on)")
    if isinstance(items, (str, dict)):
        items = [items]
    if not isinstance(items, list):
        raise loc.error(("cases",), f"expected a list of cases, got {_short.repr(items)}")
    out: list[Case] = []
    for m, item in enumerate(items):
        keys = ("cases", m)
        if isinstance(item, str):
            p = _case_path(base, item, keys, loc)
            out.append(Case(case_id_for(p), p))
            continue
        if not isinstance(item, dict):
            raise loc.error(keys, f"cannot understand the case entry {_short.repr(item)}")
        kind = next((k for k in CASE_KEYS if k in item), None)
        if kind is None or sum(k in item for k in CASE_KEYS) > 1:
            raise loc.error(keys, "a case entry needs exactly one of path, folder, csv or qido, got "
                            f"{_short.repr(item)}")
        extra = sorted(str(k) for k in item if k not in CASE_KEYS[kind])
        if extra:
            raise loc.error(keys + (extra[0],), f"unknown key {extra[0]!r} in a {kind} case entry "
                            f"(it may have: {', '.join(sorted(CASE_KEYS[kind]))})")
        if kind == "path":
            p = _case_path(base, item["path"], keys + ("path",), loc)
            out.append(Case(_case_id(item.get("id"), p, keys, loc), p))
        elif kind == "folder":
            out.extend(_folder_cases(item, base, keys, loc))
        elif kind == "qido":
            out.extend(_qido_cases(item, keys, loc))
        else:
            out.extend(_csv_cases(_resolve(base, _path(item["csv"], keys + ("csv",), loc)),
                                  keys, loc))
    return out


def _case_id(value: Any, p: Path, keys: tuple, loc: Located) -> str:
    if value is None or value == "":
        return case_id_for(p)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise loc.error(keys + ("id",), f"expected a case id (text), got {_short.repr(value)}")
    return str(value).strip()


def _folder_cases(item: dict, base: Path, keys: tuple, loc: Located) -> list[Case]:
    folder = _resolve(base, _path(item["folder"], keys + ("folder",), loc))
    pattern = item.get("pattern", "*")
    if not isinstance(pattern, str) or not pattern:
        raise loc.error(keys + ("pattern",), f"expected a file pattern, got {_short.repr(pattern)}")
    if not folder.is_dir():
        raise loc.error(keys + ("folder",), f"case folder {folder} does not exist")
    try:
        return [Case(case_id_for(p), p) for p in sorted(folder.glob(pattern))]
    except (ValueError, OSError) as exc:
        raise loc.error(keys + ("pattern",), f"unusable pattern {pattern!r} ({exc})") from None


def _csv_cases(csv_path: Path, keys: tuple, loc: Located) -> list[Case]:
    try:
        text = read_text(csv_path, "cases CSV")
    except SpecError as exc:
        raise SpecError(f"{loc.where(keys + ('csv',))}: {exc}") from None
    where = f"{loc.where(keys + ('csv',))}: {csv_path}"
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise SpecError(f"{where}: the cases CSV needs a 'path' column (header: "
                        f"{_short.repr(reader.fieldnames)})")
    out = []
    try:
        for row in reader:
            line = reader.line_num
            raw = (row.get("path") or "").strip()
            if not raw or "\0" in raw:
                raise SpecError(f"{where}: line {line}: empty path")
            p = _series_url(raw, f"{where}: line {line}") if is_url(raw) else \
                _resolve(csv_path.parent, Path(raw).expanduser())
            out.append(Case((row.get("id") or "").strip() or case_id_for(p), p))
    except csv.Error as exc:
        raise SpecError(f"{where}: line {reader.line_num}: not valid CSV ({exc})") from None
    return out


def _qido_cases(item: dict, keys: tuple, loc: Located) -> list[Case]:
    """The series a QIDO-RS search finds, one case each (id: the SeriesInstanceUID)."""
    from ..pacs import PacsError
    from ..pacs.client import PacsClient
    from ..pacs.query import series_filters

    try:
        client = PacsClient(str(item["qido"]))
        limit = item.get("limit")
        rows = client.search_series(filters=series_filters(item.get("query") or {},
                                                           f"{loc.source}: qido query"),
                                    limit=int(limit) if limit else None)
    except (PacsError, TypeError, ValueError) as exc:
        raise loc.error(keys + ("qido",), f"the QIDO search on {item['qido']} failed: {exc}") \
            from None
    return [Case(r.series_uid, r.url) for r in rows]


def _check_unique(cases: list[Case], loc: Located) -> None:
    """Case ids must be unique, and so must the output names they give (case-insensitively:
    two ids that differ only in case or in unsafe characters would overwrite each other)."""
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for m, c in enumerate(cases):
        if c.id in seen:
            raise loc.error(("cases", m), f"case id {c.id!r} is repeated (first at cases"
                            f"[{seen[c.id]}]); give each case its own id")
        seen[c.id] = m
        name = c.output_name.lower()
        if name in names:
            other = cases[names[name]].id
            raise loc.error(("cases", m), f"case ids {other!r} and {c.id!r} would write the same "
                            f"output file ({c.output_name}); give them distinct ids")
        names[name] = m

