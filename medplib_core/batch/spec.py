"""Batch specification: which cases, which engine, which prompts, which outputs.

A spec is a YAML or JSON file (or the same dict from Python)::

    output: runs/liver            # folder for label maps and the run manifest (relative to the spec)
    engine: {name: litemedsam}    # or {name: medplib, checkpoint: ..., clip: ..., sam: ..., device: cuda}
    cases:
      - scans/case01.nii.gz                       # a NIfTI file, a DICOM file or folder, a 2D image
      - {path: scans/ct_series, id: ct01}
      - {folder: scans/more, pattern: "*.nii.gz"} # every match becomes a case
      - {csv: cases.csv}                          # a CSV with a `path` column (and optionally `id`)
      - https://pacs/dicom-web/studies/1.2.3/series/1.2.3.4   # a series on a PACS (DICOMweb)
      - {qido: https://pacs/dicom-web, query: {Modality: CT, StudyDate: [2024-01-01, 2024-06-30]}}
                                                  # every series a QIDO-RS search finds (limit: N)
    prompts: prompts.csv          # boxes / points per case (see prompts_csv.py)
    targets: [liver, spleen]      # text targets to ground (MedPLIB engine): one label each
    propagate: true               # grow each 2D result through the volume
    dicom_seg: false              # also write a DICOM SEG for DICOM cases
    workers: auto                 # processes; auto = one per two CPU cores (one per GPU on GPUs)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MedplibError
from ..pacs.urls import is_url
from .prompts_csv import PromptRow, read_prompts


class SpecError(MedplibError):
    """The batch specification is unusable; the message names the file and the problem."""


@dataclass
class Case:
    id: str
    path: Path | str  # a local path, or a DICOMweb series URL (a str: Path would mangle it)


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

    def prompts_for(self, case_id: str) -> list[PromptRow]:
        return self.prompts.get(case_id, [])


def case_id_for(path: Path | str) -> str:
    if is_url(path):
        return str(path).rstrip("/").rsplit("/", 1)[-1]  # the SeriesInstanceUID
    name = path.name
    for ext in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def load_spec(spec: str | Path | dict[str, Any], base: Path | None = None) -> BatchSpec:
    """Parse a spec file (YAML/JSON) or dict; paths are relative to the spec's folder."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the batch spec ({exc.strerror})") from exc
        data = _parse(path, text)
        base = path.resolve().parent
        source = str(path)
    else:
        data, source = dict(spec), "<dict>"
        base = base or Path.cwd()
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a batch spec must be a mapping with cases, engine and prompts")
    cases = _cases(data.get("cases"), base, source)
    if not cases:
        raise SpecError(f"{source}: no cases found")
    ids = [c.id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SpecError(f"{source}: case ids must be unique; repeated: {', '.join(dupes)} (give each an id)")
    prompts: dict[str, list[PromptRow]] = {}
    if data.get("prompts"):
        rows = read_prompts(_resolve(base, data["prompts"]))
        unknown = sorted({r.case for r in rows} - set(ids))
        if unknown:
            raise SpecError(f"{source}: the prompts name cases that are not in the spec: {', '.join(unknown[:5])}")
        for r in rows:
            prompts.setdefault(r.case, []).append(r)
    targets = [str(t) for t in data.get("targets") or []]
    engine = data.get("engine") or {"name": "litemedsam"}
    if isinstance(engine, str):
        engine = {"name": engine}
    if targets and engine.get("name") != "medplib":
        raise SpecError(f"{source}: text targets need the MedPLIB engine (engine: {{name: medplib, ...}})")
    if not prompts and not targets:
        raise SpecError(f"{source}: give box/point prompts (prompts: FILE.csv) or text targets")
    values: dict[str, int] = {}
    for name in [r.label for rows in prompts.values() for r in rows] + targets:
        values.setdefault(name, len(values) + 1)
    out = _resolve(base, data.get("output") or "batch-output")
    return BatchSpec(cases=cases, output=out, engine=dict(engine), prompts=prompts, targets=targets,
                     label_values=values, propagate=bool(data.get("propagate", False)),
                     dicom_seg=bool(data.get("dicom_seg", False)),
                     workers=data.get("workers", "auto"), source=source)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SpecError(f"{path}: not valid JSON ({exc})") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from exc


def _resolve(base: Path, p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p)


def _case_path(base: Path, p: str | Path) -> Path | str:
    """A case's scan: a path relative to ``base``, or a series URL as it is."""
    if is_url(p):
        from ..pacs import PacsError, parse_series_url

        try:
            return parse_series_url(str(p)).url
        except PacsError as exc:
            raise SpecError(f"case {p!r}: {exc.reason}" + (f" ({exc.hint})" if exc.hint else "")) from None
    return _resolve(base, p)


def _cases(items: Any, base: Path, source: str) -> list[Case]:
    if items is None:
        raise SpecError(f"{source}: 'cases' is missing")
    if isinstance(items, (str, dict)):
        items = [items]
    out: list[Case] = []
    for item in items:
        if isinstance(item, str):
            p = _case_path(base, item)
            out.append(Case(case_id_for(p), p))
        elif isinstance(item, dict) and "path" in item:
            p = _case_path(base, item["path"])
            out.append(Case(str(item.get("id") or case_id_for(p)), p))
        elif isinstance(item, dict) and "folder" in item:
            folder = _resolve(base, item["folder"])
            if not folder.is_dir():
                raise SpecError(f"{source}: case folder {folder} does not exist")
            for p in sorted(folder.glob(item.get("pattern", "*"))):
                out.append(Case(case_id_for(p), p))
        elif isinstance(item, dict) and "csv" in item:
            csv_path = _resolve(base, item["csv"])
            try:
                with open(csv_path, newline="") as fh:
                    for row in csv.DictReader(fh):
                        p = _case_path(csv_path.parent, row["path"])
                        out.append(Case(row.get("id") or case_id_for(p), p))
            except (OSError, KeyError) as exc:
                raise SpecError(f"{source}: cannot read cases from {csv_path} (needs a 'path' column): {exc}") from exc
        elif isinstance(item, dict) and "qido" in item:
            out.extend(_qido_cases(item, source))
        else:
            raise SpecError(f"{source}: cannot understand the case entry {item!r}")
    return out


def _qido_cases(item: dict[str, Any], source: str) -> list[Case]:
    """The series a QIDO-RS search finds, one case each (id: the SeriesInstanceUID)."""
    from ..pacs import PacsError
    from ..pacs.client import PacsClient
    from ..pacs.query import series_filters

    try:
        client = PacsClient(str(item["qido"]))
        limit = item.get("limit")
        rows = client.search_series(filters=series_filters(item.get("query") or {}, f"{source}: qido query"),
                                    limit=int(limit) if limit else None)
    except (PacsError, TypeError, ValueError) as exc:
        raise SpecError(f"{source}: the QIDO search on {item['qido']} failed: {exc}") from None
    return [Case(r.series_uid, r.url) for r in rows]
