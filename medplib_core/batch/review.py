"""The review queue over a batch run: step through cases, accept / edit / reject, export.

Decisions are appended to the run's manifest the moment they are made (one fsynced JSON line
each), so they survive a restart; the latest decision of a case wins. An edited label map is
saved beside the proposed one (``labels/edited/``) and the decision points at it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MedplibError
from ..export.atomic import atomic_path
from ..export.sidecar import sidecar_path
from .manifest import Manifest, file_sha256, path_inside
from .spec import safe_name

DECISIONS = ("accepted", "edited", "rejected")


@dataclass
class ReviewItem:
    case: str
    input: Path
    proposed: Path | None  # the batch output, None if the case failed
    status: str  # the batch status: "ok" or "failed"
    error: str | None
    decision: str | None  # None (not reviewed yet), "accepted", "edited", "rejected"
    labels: Path | None  # the label file the decision stands for (edited or proposed)
    record: dict[str, Any]  # the batch result
    review: dict[str, Any] = field(default_factory=dict)  # the latest decision record

    @property
    def counts(self) -> dict[str, int]:
        """Voxels per label value of the label file the item stands for (an edited map's own
        counts once saved, else the batch's)."""
        if self.decision == "edited" and "counts" in self.review:
            return dict(self.review["counts"])
        return dict(self.record.get("counts") or {})


class ReviewQueue:
    def __init__(self, manifest_path: str | Path):
        self.manifest = Manifest(manifest_path)
        if not self.manifest.path.exists():
            raise MedplibError(f"{self.manifest.path}: no run manifest here")
        self.run_dir = self.manifest.path.parent
        self.refresh()

    def refresh(self) -> None:
        """Re-read the manifest. Label paths must lie inside the run folder: one that points
        elsewhere (``/etc/hostname``, ``../x``) is never opened, copied or written; the case
        shows it as its error instead."""
        results = self.manifest.latest("result")
        reviews = self.manifest.latest("review")
        self.items: list[ReviewItem] = []
        for case, rec in results.items():
            case = str(case)
            rev = reviews.get(case)
            error, status = rec.get("error"), rec.get("status", "failed")
            proposed = path_inside(self.run_dir, rec.get("output"))
            if rec.get("output") and proposed is None:
                error, status = f"the manifest's output {rec.get('output')!r} is not inside the " \
                    "run folder: ignored", "failed"
            labels = proposed
            if rev and rev.get("labels"):
                labels = path_inside(self.run_dir, rev.get("labels"))
                if labels is None:
                    error = f"the review's labels {rev.get('labels')!r} are not inside the run " \
                        "folder: ignored"
            decision = rev.get("decision") if rev and rev.get("decision") in DECISIONS else None
            self.items.append(ReviewItem(case=case, input=Path(str(rec.get("input", ""))),
                                         proposed=proposed, status=str(status),
                                         error=error, decision=decision, labels=labels,
                                         record=rec, review=dict(rev or {})))

    def __len__(self) -> int:
        return len(self.items)

    def item(self, case: str) -> ReviewItem:
        for it in self.items:
            if it.case == case:
                return it
        raise KeyError(case)

    def next_unreviewed(self, after: str | None = None) -> ReviewItem | None:
        start = 0
        if after is not None:
            start = next((i + 1 for i, it in enumerate(self.items) if it.case == after), 0)
        for it in self.items[start:] + self.items[:start]:
            if it.decision is None and it.status == "ok":
                return it
        return None

    def decide(self, case: str, decision: str, edited_labels: str | Path | None = None,
               reviewer: str = "", note: str = "", counts: dict[int, int] | None = None) -> ReviewItem:
        """Record a decision now. ``edited`` needs the path of the corrected label map
        (``counts``: its voxels per label value)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        it = self.item(case)
        rec: dict[str, Any] = {"kind": "review", "case": case, "decision": decision,
                               "reviewer": reviewer, "note": note}
        if decision == "edited":
            if edited_labels is None:
                raise ValueError("an 'edited' decision needs the corrected label file")
            try:
                rel = Path(edited_labels).resolve().relative_to(self.run_dir.resolve())
            except ValueError:
                raise MedplibError(f"{edited_labels}: edited labels must be saved inside the run "
                                   f"folder {self.run_dir}") from None
            rec["labels"] = str(rel)
            rec["labels_sha256"] = file_sha256(edited_labels)
            if counts is not None:
                rec["counts"] = {str(int(k)): int(v) for k, v in counts.items()}
        elif it.proposed is not None:
            rec["labels"] = str(it.proposed.relative_to(self.run_dir))
        self.manifest.append(rec)
        self.refresh()
        return self.item(case)

    def edited_path(self, case: str) -> Path:
        """Where the edited labels of ``case`` go: ``labels/edited/<safe case name>.<ext>``,
        inside the run folder whatever the manifest's case id holds."""
        it = self.item(case)
        name = it.proposed.name.lower() if it.proposed else ""
        ext = next((e for e in (".nii.gz", ".nii", ".png", ".dcm") if name.endswith(e)), ".nii.gz")
        return self.run_dir / "labels" / "edited" / f"{safe_name(case)}{ext}"

    def export_accepted(self, dest: str | Path) -> list[Path]:
        """Copy the label maps of accepted and edited cases (with sidecars) into ``dest``."""
        dest = Path(dest)
        out = []
        for it in self.items:
            if it.decision in ("accepted", "edited") and it.labels and it.labels.is_file() and \
                    path_inside(self.run_dir, str(it.labels.relative_to(self.run_dir))):
                target = dest / it.labels.name
                with atomic_path(target) as tmp:
                    shutil.copyfile(it.labels, tmp)
                side = sidecar_path(it.labels)
                if side.is_file():
                    with atomic_path(sidecar_path(target)) as tmp:
                        shutil.copyfile(side, tmp)
                out.append(target)
        return out

    def summary(self) -> dict[str, int]:
        counts = {"total": len(self.items), "unreviewed": 0, "failed": 0}
        for d in DECISIONS:
            counts[d] = 0
        for it in self.items:
            if it.status != "ok":
                counts["failed"] += 1
            elif it.decision is None:
                counts["unreviewed"] += 1
            else:
                counts[it.decision] += 1
        return counts
