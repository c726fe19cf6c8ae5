"""Batch specs that list PACS series by URL or by a QIDO query, run against a real Orthanc."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medplib_core import load
from medplib_core.batch import load_spec, run_batch
from medplib_core.batch.manifest import Manifest
from medplib_core.batch.spec import SpecError


def test_spec_lists_series_by_url_and_by_qido_query(pacs, pacs_series, tmp_path):
    ct, mr = pacs_series["ct_small"], pacs_series["mr_small"]
    spec = load_spec({"cases": [ct["url"] + "/", {"path": ct["url"], "id": "again"},
                                {"qido": pacs.dicomweb, "query": {"Modality": "MR"}}],
                      "targets": ["liver"], "engine": "medplib"}, base=tmp_path)
    assert [(c.id, c.path) for c in spec.cases] == [(ct["series"], ct["url"]), ("again", ct["url"]),
                                                    (mr["series"], mr["url"])]  # URLs stay URLs
    doe = load_spec({"cases": [{"qido": pacs.dicomweb, "query": {"PatientName": "Doe*", "Modality": "CT"}}],
                     "targets": ["liver"], "engine": "medplib"}, base=tmp_path)
    found = {c.id for c in doe.cases}
    assert {pacs_series["ct5"]["series"], pacs_series["ct_gap"]["series"]} <= found
    assert ct["series"] not in found and mr["series"] not in found


def test_spec_errors_name_the_problem(pacs, tmp_path):
    with pytest.raises(SpecError, match="not a DICOM keyword"):
        load_spec({"cases": [{"qido": pacs.dicomweb, "query": {"Modalty": "CT"}}], "targets": ["x"],
                   "engine": "medplib"}, base=tmp_path)
    with pytest.raises(SpecError, match="not a DICOMweb series URL"):
        load_spec({"cases": [pacs.dicomweb + "/studies/1.2"], "targets": ["x"], "engine": "medplib"}, base=tmp_path)


def test_batch_segments_a_pacs_series_and_resumes(pacs, pacs_series, tmp_path):
    from orthanc_server import free_port

    s = pacs_series["ct_small"]
    dead = s["url"].replace(f":{pacs.port}/", f":{free_port()}/")
    prompts = tmp_path / "prompts.csv"
    with open(prompts, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "space", "slice", "x0", "y0", "x1", "y1"])
        for case in ("ct", "dead"):
            w.writerow([case, "body", "box", "pixel", 0, 10, 10, 118, 118])
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"output": "run", "engine": {"name": "litemedsam"}, "dicom_seg": True,
                                     "cases": [{"path": dead, "id": "dead"}, {"path": s["url"], "id": "ct"}],
                                     "prompts": str(prompts)}))
    summary = run_batch(spec_path, workers=1)
    results = Manifest(tmp_path / "run").latest()
    assert summary["ok"] == 1 and summary["failed"] == 1, results
    # a server that is down fails its own case, with the reason
    assert results["dead"]["error"].startswith(dead) and "cannot connect" in results["dead"]["error"]
    rec = results["ct"]
    assert rec["input"] == s["url"] and rec["dicom_seg"].endswith("ct_seg.dcm")
    img = sitk.ReadImage(str(tmp_path / "run" / rec["output"]))
    vol = load(s["folder"])
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    assert sitk.GetArrayFromImage(img).any()
    again = run_batch(spec_path, workers=1)
    assert again["skipped"] == 1 and again["ok"] == 0  # same series on the server: nothing to redo
