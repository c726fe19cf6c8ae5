"""A batch with hostile cases runs to the end and writes only inside its run folder; the review
queue never reads, copies or writes outside it (issue 19 items 1, 9 and 10). Real LiteMedSAM."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from robust_inputs import rle_panic_dicom

from medplib_core.batch import Manifest, run_batch
from medplib_core.batch.review import ReviewQueue
from medplib_core.errors import MedplibError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _disc(path: Path, cy: int = 60, cx: int = 80, r: int = 20) -> Path:
    rng = np.random.default_rng(5)
    img = rng.normal(60, 8, (140, 180)).clip(0, 255)
    yy, xx = np.mgrid[:140, :180]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    top = tmp_path_factory.mktemp("hostile")
    root = top / "a" / "b" / "project"
    root.mkdir(parents=True)
    disc = _disc(root / "disc.png")
    panic = rle_panic_dicom(root / "rle_panic.dcm")
    box = (57, 37, 103, 83)
    cases = [("good", disc, box), ("../../escaped", disc, box), ("/abs/evil", disc, box),
             ("panic", panic, (5, 5, 30, 30)), ("outside", disc, (150, 100, 400, 300))]
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "x0", "y0", "x1", "y1"])
        for cid, _, b in cases:
            w.writerow([cid, "disc", "box", *b])
    spec = {"output": "run", "engine": "litemedsam", "prompts": "prompts.csv",
            "cases": [{"id": cid, "path": str(p)} for cid, p, _ in cases]}
    (root / "spec.json").write_text(json.dumps(spec))
    before = _files_under(top)
    summary = run_batch(root / "spec.json", workers=1)
    return top, root, summary, before


def test_every_case_runs_and_each_failure_says_why(hostile_run) -> None:
    top, root, summary, _ = hostile_run
    assert summary["ok"] == 3 and summary["failed"] == 2, Manifest(root / "run").latest()
    recs = Manifest(root / "run").latest()
    assert "could not decode" in recs["panic"]["error"] and "traceback" not in recs["panic"]
    assert "prompts.csv: line 6" in recs["outside"]["error"] and "outside" in recs["outside"]["error"]


def test_case_ids_never_write_outside_the_run_folder(hostile_run) -> None:
    top, root, summary, before = hostile_run
    new = _files_under(top) - before
    run = (root / "run").resolve()
    assert new and all(run in p.resolve().parents for p in new), sorted(map(str, new))
    labels = {p.name for p in (root / "run" / "labels").iterdir()}
    assert {"good.png", "_.._escaped.png", "_abs_evil.png"} <= labels
    recs = Manifest(root / "run").latest()
    assert recs["../../escaped"]["output"] == "labels/_.._escaped.png"
    assert not (top / "a" / "escaped.png").exists() and not Path("/abs/evil.png").exists()


def test_review_never_reads_copies_or_writes_outside_the_run(hostile_run, tmp_path) -> None:
    top, root, _, _ = hostile_run
    run = root / "run"
    secret = top / "secret.txt"
    secret.write_text("not for export")
    m = Manifest(run)
    m.append({"kind": "result", "case": "../../../evil", "status": "ok", "input": str(root / "disc.png"),
              "output": "labels/good.png"})
    m.append({"kind": "result", "case": "stolen", "status": "ok", "input": str(root / "disc.png"),
              "output": "../../../secret.txt"})
    m.append({"kind": "review", "case": "good", "decision": "accepted", "labels": str(secret)})
    m.append({"kind": "review", "case": "../../escaped", "decision": "accepted",
              "labels": "../../../secret.txt"})
    m.append({"kind": "review", "case": "/abs/evil", "decision": "accepted"})
    q = ReviewQueue(run)
    assert q.item("stolen").proposed is None and "not inside the run folder" in q.item("stolen").error
    assert q.item("good").labels is None and "not inside" in q.item("good").error
    assert q.item("../../escaped").labels is None
    edited = q.edited_path("../../../evil")
    assert edited.parent == run / "labels" / "edited" and edited.name == "_.._.._evil.png"
    exported = q.export_accepted(tmp_path / "accepted")
    assert [p.name for p in exported] == ["_abs_evil.png"]
    assert "not for export" not in "".join(p.read_text(errors="replace") for p in
                                           (tmp_path / "accepted").iterdir())
    with pytest.raises(MedplibError, match="inside the run folder"):
        q.decide("good", "edited", edited_labels=secret)


def test_a_damaged_manifest_never_breaks_the_queue(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = [b'{"kind": "result", "case": ["a"], "status": "ok"}', b'{"case": 5}', b"\xff\xfe\x00",
             b'{"kind": "result", "case": "ok1", "status": "ok", "output": 7}', b"[1, 2]",
             b'{"kind": "review", "case": "ok1", "decision": "maybe"}', b'{"kind": "result", "ca']
    (run / "manifest.jsonl").write_bytes(b"\n".join(lines))
    q = ReviewQueue(run)
    assert [it.case for it in q.items] == ["ok1"] and q.items[0].decision is None
    assert os.path.basename(q.edited_path("ok1")) == "ok1.nii.gz"
