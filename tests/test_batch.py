"""Batch runs on real cases: alignment, resume after a kill, bad cases, review persistence."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

import medplib_core
from medplib_core.batch import Manifest, load_spec, run_batch
from medplib_core.batch.review import ReviewQueue
from medplib_core.engines.prompts import dice

pytestmark = pytest.mark.slow


def _label_box(labels_path: Path, value: int):
    """The largest slice of a label and its tight box there (pixel coordinates of the file)."""
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    m = arr == value
    k = int(np.argmax(m.sum(axis=(1, 2))))
    rows, cols = np.nonzero(m[k])
    return k, (cols.min(), rows.min(), cols.max(), rows.max()), m[k]


@pytest.fixture(scope="module")
def real_batch(shared_data, tmp_path_factory):
    """A spec over a DICOM series, two NIfTI volumes and a 2D image, boxes from a CSV."""
    root = tmp_path_factory.mktemp("batch")
    vols = shared_data / "volumes"
    k_liver, box_liver, gt_liver = _label_box(vols / "ct_small_abdomen_labels.nii.gz", 5)
    k_mr, box_mr, gt_mr = _label_box(vols / "mr_small_abdomen_labels.nii.gz", 5)
    dev = list(csv.DictReader(open(shared_data / "dev2d" / "manifest.csv")))
    row = next(r for r in dev if r["modality"] == "ultrasound" and float(r["largest_cc_frac"]) >= 0.95)
    # the series' liver box in world coordinates, from the label file placed onto the series
    series = medplib_core.load(vols / "ct_series_j2k")
    from medplib_core.export import import_labels

    lab = import_labels(vols / "ct_series_j2k_labels.nii.gz", series).array == 5
    ks = int(np.argmax(lab.sum(axis=(1, 2))))
    r, c = np.nonzero(lab[ks])
    w0 = series.index_to_world([c.min(), r.min(), ks])
    w1 = series.index_to_world([c.max(), r.max(), ks])
    prompts = root / "prompts.csv"
    with open(prompts, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "space", "slice", "x0", "y0", "z0", "x1", "y1", "z1"])
        w.writerow(["ct_small", "liver", "box", "pixel", k_liver, *box_liver[:2], "", *box_liver[2:], ""])
        w.writerow(["mr_small", "liver", "box", "pixel", k_mr, *box_mr[:2], "", *box_mr[2:], ""])
        w.writerow(["us", "lesion", "box", "pixel", 0, *row["box_xyxy"].split()[:2], "", *row["box_xyxy"].split()[2:], ""])
        w.writerow(["series", "liver", "box", "world", "", w0[0], w0[1], w0[2], w1[0], w1[1], w1[2]])
    spec = {
        "output": str(root / "run"),
        "engine": {"name": "litemedsam"},
        "cases": [
            {"path": str(vols / "ct_small_abdomen.nii.gz"), "id": "ct_small"},
            {"path": str(vols / "mr_small_abdomen.nii.gz"), "id": "mr_small"},
            {"path": str(shared_data / "dev2d" / row["image"]), "id": "us"},
            {"path": str(vols / "ct_series_j2k"), "id": "series"},
        ],
        "prompts": str(prompts),
    }
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(spec))
    gts = {"ct_small": (k_liver, gt_liver), "mr_small": (k_mr, gt_mr), "series": (ks, lab[ks]),
           "us": (0, np.array(Image.open(shared_data / "dev2d" / row["mask"])) > 0)}
    summary = run_batch(spec_path, workers=1)
    return spec_path, summary, gts


def test_batch_label_maps_line_up_with_their_scans(real_batch):
    spec_path, summary, gts = real_batch
    assert summary["ok"] == 4 and summary["failed"] == 0
    spec = load_spec(spec_path)
    results = Manifest(spec.output).latest()
    for case in spec.cases:
        rec = results[case.id]
        out = spec.output / rec["output"]
        vol = medplib_core.load(case.path)
        k, gt = gts[case.id]
        if out.name.endswith(".png"):
            got = np.array(Image.open(out)) > 0
        else:
            img = sitk.ReadImage(str(out))
            # same grid as the scan: the exported map overlays voxel for voxel
            np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-3)
            np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-4)
            np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-5)
            got = sitk.GetArrayFromImage(img)[k] > 0
        assert dice(got, gt) > 0.7, (case.id, dice(got, gt))
        assert rec["engine"]["name"]
        assert rec["timings"]["total_s"] > 0


def test_rerun_skips_finished_cases(real_batch):
    spec_path, _, _ = real_batch
    again = run_batch(spec_path, workers=1)
    assert again["skipped"] == 4 and again["ok"] == 0


def test_review_decisions_persist_and_export(real_batch, tmp_path):
    spec_path, _, _ = real_batch
    run_dir = load_spec(spec_path).output
    q = ReviewQueue(run_dir)
    first = q.next_unreviewed()
    q.decide(first.case, "accepted")
    second = q.next_unreviewed(after=first.case)
    q.decide(second.case, "rejected", note="wrong organ")
    # a new queue (as after a restart) sees the decisions
    q2 = ReviewQueue(run_dir / "manifest.jsonl")
    assert q2.item(first.case).decision == "accepted"
    assert q2.item(second.case).decision == "rejected"
    exported = q2.export_accepted(tmp_path / "accepted")
    assert [p.name for p in exported] == [q2.item(first.case).labels.name]


def _make_cases(root: Path, n: int) -> list[dict]:
    """Synthetic 2D cases: a bright disc on noise, with its box."""
    rng = np.random.default_rng(3)
    cases = []
    for i in range(n):
        img = (rng.normal(60, 8, (160, 200))).clip(0, 255)
        cy, cx, r = 60 + i % 40, 80 + (7 * i) % 60, 18 + i % 9
        yy, xx = np.mgrid[:160, :200]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
        p = root / f"disc_{i:02d}.png"
        Image.fromarray(img.astype(np.uint8)).save(p)
        cases.append({"id": p.stem, "path": str(p), "box": (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)})
    return cases


def _write_spec(root: Path, cases: list[dict], extra_cases=()) -> Path:
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "x0", "y0", "x1", "y1"])
        for c in cases:
            w.writerow([c["id"], "disc", "box", *c["box"]])
        for c in extra_cases:
            w.writerow([c["id"], "disc", "box", 5, 5, 40, 40])
    spec = {"output": "run", "engine": "litemedsam", "prompts": "prompts.csv",
            "cases": [{"id": c["id"], "path": c["path"]} for c in list(cases) + list(extra_cases)]}
    (root / "spec.yaml").write_text(json.dumps(spec))  # JSON is valid YAML
    return root / "spec.yaml"


def test_corrupt_case_is_reported_and_the_others_complete(tmp_path):
    cases = _make_cases(tmp_path, 3)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM" + os.urandom(300))
    spec = _write_spec(tmp_path, cases, [{"id": "broken", "path": str(bad)}])
    summary = run_batch(spec, workers=1)
    assert summary["ok"] == 3 and summary["failed"] == 1
    rec = Manifest(tmp_path / "run").latest()["broken"]
    assert rec["status"] == "failed" and "broken.dcm" in rec["error"]


def _start(spec: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "medplib_core.cli.main", "batch", str(spec), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _wait_records(manifest: Manifest, n: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and len(manifest.latest()) < n:
        time.sleep(0.2)


def test_ctrl_c_and_kill_leave_a_consistent_run_that_resumes(tmp_path):
    cases = _make_cases(tmp_path, 8)
    spec = _write_spec(tmp_path, cases)
    manifest = Manifest(tmp_path / "run")
    labels_dir = tmp_path / "run" / "labels"
    # Ctrl+C: the running case finishes and is recorded, then the run stops
    proc = _start(spec)
    _wait_records(manifest, 1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out.decode()[-2000:]
    after_int = manifest.latest()
    assert 1 <= len(after_int) < 8 and all(r["status"] == "ok" for r in after_int.values())
    # a hard kill mid-run
    proc = _start(spec)
    _wait_records(manifest, len(after_int) + 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = manifest.latest()
    assert len(after_int) < len(done_before) < 8
    finished = {p.name for p in labels_dir.glob("*.png")}
    # every output present is complete and recorded; temporaries never carry a final name
    for rec in done_before.values():
        assert rec["output"].split("/")[-1] in finished
    assert all(not p.name.startswith(".") or ".partial" in p.name for p in labels_dir.iterdir())
    summary = run_batch(spec, workers=1)
    assert summary["skipped"] == len(done_before)
    assert summary["ok"] == 8 - len(done_before)
    assert len(Manifest(tmp_path / "run").latest()) == 8
