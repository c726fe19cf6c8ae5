"""One batch case: load the scan, run its prompts (and text targets), write its label map.

The case is annotated in an `AnnotationSession`, as in the GUI: each result is proposed and
accepted into its label, so the exported labels carry the same per-label provenance entries.
Prompts lie on the scan's stored slices (`STORED`: x = column i, y = row j of slice k).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..annotation import PromptKind
from ..engines.base import Prompt, SegmentationEngine
from ..errors import FATAL, MedplibError
from ..project import PromptRecord
from ..session import STORED, AnnotationSession
from ..volume import Volume
from .manifest import file_sha256
from .prompts_csv import PromptRow
from .spec import BatchSpec, Case


@dataclass
class CaseJob:
    """What a worker needs for one case (plain data, so it pickles to worker processes)."""

    case: Case
    prompts: list[PromptRow]
    targets: list[str]
    label_values: dict[str, int]
    propagate: bool
    dicom_seg: bool
    run_dir: Path
    input_sha256: str

    @classmethod
    def from_spec(cls, spec: BatchSpec, case: Case, checksum: str) -> "CaseJob":
        return cls(case, spec.prompts_for(case.id), list(spec.targets), dict(spec.label_values),
                   spec.propagate, spec.dicom_seg, spec.output, checksum)


def _group(rows: list[PromptRow], vol: Volume) -> dict[tuple[str, int], Prompt]:
    """Rows with the same label and slice become one prompt (a box plus points)."""
    prompts: dict[tuple[str, int], Prompt] = {}
    for row in rows:
        k, xy = row.on_volume(vol)
        p = prompts.setdefault((row.label, k), Prompt())
        if row.type == "box":
            p.box = (xy[0], xy[1], xy[2], xy[3])
        else:
            p.points.append((xy[0], xy[1]))
            p.point_labels.append(row.polarity)
    return prompts


def run_case(job: CaseJob, engine: SegmentationEngine,
             propagate_fn: Callable[..., np.ndarray] | None = None) -> dict[str, Any]:
    """Process one case; never raises for a bad case: the record says what went wrong."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"kind": "result", "case": job.case.id, "input": str(job.case.path),
                           "input_sha256": job.input_sha256, "engine": engine.info.to_dict()}
    try:
        from .. import load
        from ..export import export_labels, write_dicom_seg

        vol = load(job.case.path)
        t_load = time.perf_counter()
        annotation = AnnotationSession(vol, str(job.case.path), undo_budget_bytes=0)  # no undo here
        for name, value in sorted(job.label_values.items(), key=lambda kv: kv[1]):
            annotation.add_label(name, value=value)
        encoded: dict[int, Any] = {}
        n_enc = 0
        prompt_log = []

        def session(k: int):
            nonlocal n_enc
            if k not in encoded:
                encoded[k] = engine.encode(annotation.pixels(STORED, k))
                n_enc += 1
            return encoded[k]

        def propagated(k: int, res) -> np.ndarray | None:
            if job.propagate and propagate_fn is not None and vol.shape[0] > 1 and not res.empty:
                return propagate_fn(engine, vol, k, res.mask)
            return None

        for (name, k), prompt in _group(job.prompts, vol).items():
            res = session(k).predict(prompt)
            mask3d = propagated(k, res)
            _accept(annotation, job.label_values[name], k, prompt, res, mask3d, PromptKind.SEGMENT)
            prompt_log.append({"label": name, "slice": k, "prompt": prompt.describe(), "score": res.score,
                               "pixels": int(res.mask.sum()), "reason": res.reason,
                               "propagated": mask3d is not None})
        for target in job.targets:
            k, res = _ground(engine, vol, target, session)
            if res is not None:
                _accept(annotation, job.label_values[target], k, Prompt(text=target), res,
                        propagated(k, res), PromptKind.TEXT)
            prompt_log.append({"label": target, "slice": k, "text": target,
                               "pixels": 0 if res is None else int(res.mask.sum())})
        lm, labels = annotation.labelmap, annotation.labels
        t_seg = time.perf_counter()
        case_dir = job.run_dir / "labels"
        stem = job.case.output_name  # a safe file name: a case id never picks the folder
        name = f"{stem}.png" if vol.is_2d and vol.source and vol.source.kind == "image" else f"{stem}.nii.gz"
        extra = {"batch": {"case": job.case.id, "prompts": prompt_log, "engine": engine.info.to_dict()}}
        out = export_labels(case_dir / name, lm.array, vol, labels, extra=extra)
        if job.dicom_seg and vol.source and vol.source.kind == "dicom" and lm.array.any():
            seg = write_dicom_seg(case_dir / f"{stem}_seg.dcm", lm.array, vol, labels, extra=extra)
            rec["dicom_seg"] = str(seg.relative_to(job.run_dir))
        rec.update(status="ok", output=str(Path(out).relative_to(job.run_dir)),
                   output_sha256=file_sha256(out), counts={str(k): v for k, v in lm.counts().items()},
                   prompts=prompt_log, slices_encoded=n_enc,
                   timings={"load_s": round(t_load - t0, 3), "segment_s": round(t_seg - t_load, 3),
                            "total_s": round(time.perf_counter() - t0, 3)})
    except MedplibError as exc:
        rec.update(status="failed", error=str(exc), timings={"total_s": round(time.perf_counter() - t0, 3)})
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - one bad case never stops the run (a native
        # library's panic is no Exception)
        rec.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=6), timings={"total_s": round(time.perf_counter() - t0, 3)})
    return rec


def _accept(annotation: AnnotationSession, value: int, k: int, prompt: Prompt, res,
            mask3d: np.ndarray | None, kind: PromptKind) -> None:
    """Propose a result on stored slice ``k`` (or its propagation) and accept it into ``value``."""
    if res.empty:
        return
    annotation.set_active(value)
    if mask3d is None:
        annotation.propose_result(res, prompt, STORED, k, kind)
    else:
        prov = dict(res.provenance, score=round(float(res.score), 4), propagated_from=k)
        annotation.propose(PromptRecord(id=0, kind=PromptKind.PROPAGATE, orientation=STORED, index=k,
                                        prompt=prompt.describe(), provenance=prov, mask=mask3d))
    annotation.accept()


def _ground(engine, vol: Volume, target: str, session) -> tuple[int, Any]:
    """Ground a text target: try up to 8 evenly spaced slices, keep the largest mask."""
    ks = sorted(set(np.linspace(0, vol.shape[0] - 1, num=min(8, vol.shape[0])).round().astype(int).tolist()))
    best_k, best = ks[len(ks) // 2], None
    for k in ks:
        res = session(k).predict(Prompt(text=target))
        if best is None or res.mask.sum() > best.mask.sum():
            best_k, best = k, res
    return best_k, best
