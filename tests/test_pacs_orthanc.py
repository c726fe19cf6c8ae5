"""Against a real Orthanc (DICOMweb): search, retrieve into the cache, load, send a SEG back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import highdicom as hd
import numpy as np
import pydicom

from medplib_core import load
from medplib_core.annotation import LabelSet
from medplib_core.pacs.cache import SeriesCache
from medplib_core.pacs.client import PacsClient
from medplib_core.pacs.query import StudyQuery
from medplib_core.pacs.send import send_labels
from medplib_core.pacs import parse_series_url

from conftest import REPO
from orthanc_server import PASSWORD, USER


def _same_volume(a, b) -> None:
    assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
    assert a.spacing == b.spacing and a.origin == b.origin
    assert np.array_equal(a.direction, b.direction)
    assert a.modality == b.modality and a.window == b.window


def test_search_studies_by_each_field(pacs, pacs_series):
    c = PacsClient(pacs.dicomweb)
    names = lambda q: sorted({r.patient_name for r in c.search_studies(q)})  # noqa: E731  (other tests add copies)
    assert names(StudyQuery(patient_name="Doe")) == ["Doe^Archibald", "Doe^Peter"]
    assert names(StudyQuery(patient_name="doe^pet")) == ["Doe^Peter"]
    assert names(StudyQuery(patient_id="1CT1")) == ["CompressedSamples^CT1"]
    assert names(StudyQuery(modality="MR")) == ["CompressedSamples^MR1"]
    assert names(StudyQuery(date_from="2004-08-26", date_to="2004-08-26")) == ["CompressedSamples^MR1"]
    assert names(StudyQuery(patient_name="Nobody")) == []
    ct_small = c.search_studies(StudyQuery(patient_id="1CT1"))[0]
    assert ct_small.study_uid == pacs_series["ct_small"]["study"] and "CT" in ct_small.modalities
    gap = c.search_studies(StudyQuery(patient_id="77654033"))[0]  # a study no test sends a SEG into
    assert gap.study_uid == pacs_series["ct_gap"]["study"]
    assert gap.modalities == ["CT"] and gap.n_series == 1 and gap.n_instances == 4
    if "ct_j2k" in pacs_series:
        assert names(StudyQuery(accession="ACC-J2K-1")) == ["Shared^CT"]


def test_series_of_a_study(pacs, pacs_series):
    s = pacs_series["ct5"]
    rows = PacsClient(pacs.dicomweb).search_series(s["study"])
    row = next(r for r in rows if r.series_uid == s["series"])
    assert (row.modality, row.description, row.n_instances) == ("CT", "SmartScore - Gated 0.5 sec", 5)
    assert row.url == s["url"]


def test_retrieved_series_equals_the_local_folder(pacs, pacs_series):
    s = pacs_series["ct5"]
    seen = []
    vol = load(s["url"], progress=lambda d, t: seen.append((d, t)))
    _same_volume(vol, load(s["folder"]))
    assert vol.source.path == s["url"] and vol.source.series_instance_uid == s["series"]
    assert any("retrieved 5 instances" in n for n in vol.source.notes)
    assert seen[-1] == (1000, 1000) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_shared_ct_from_the_pacs_equals_the_local_folder(pacs, pacs_series, shared_data):
    s = pacs_series["ct_j2k"]
    vol = load(s["url"])
    local = load(s["folder"])
    _same_volume(vol, local)
    assert vol.shape == (20, 512, 512)
    # the files in the cache are the stored JPEG 2000 ones, not a transcoded copy
    cached = SeriesCache().lookup(parse_series_url(s["url"]))
    ts = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in cached.folder.glob("*.dcm")}
    assert ts == {"1.2.840.10008.1.2.4.90"}


def test_second_open_reuses_the_cache(pacs, pacs_series):
    s = pacs_series["ct_small"]
    first = load(s["url"])
    cache = SeriesCache()
    entry = cache.lookup(parse_series_url(s["url"]))
    before = {p.name: p.stat().st_mtime_ns for p in entry.folder.iterdir()}
    again = load(s["url"])
    _same_volume(first, again)
    assert any("cached copy" in n for n in again.source.notes)
    after = {p.name: p.stat().st_mtime_ns for p in entry.folder.iterdir() if p.suffix == ".dcm"}
    assert all(before[k] == v for k, v in after.items())  # no instance was written again


def test_info_cli_prints_the_same_geometry_for_url_and_folder(pacs, pacs_series, shared_data):
    s = pacs_series["ct_j2k"]
    env = dict(os.environ, MEDPLIB_DICOMWEB_USER=USER, MEDPLIB_DICOMWEB_PASSWORD=PASSWORD,
               PYTHONPATH=str(REPO))

    def info(target):
        r = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "info", str(target), "--json"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    remote, local = info(s["url"]), info(s["folder"])
    for key in ("shape_kji", "spacing", "origin", "direction", "modality", "dtype"):
        assert remote[key] == local[key], key
    assert remote["path"] == s["url"] and PASSWORD not in json.dumps(remote)


def _seg_on(vol):
    labels = np.zeros(vol.shape, np.uint8)
    k = vol.shape[0] // 2
    labels[k, 4:12, 3:9] = 1
    labels[k, 2:5, 10:14] = 2
    ls = LabelSet()
    ls.add("liver", value=1)
    ls.add("lesion", value=2)
    return labels, ls


def _seg_series_of(pacs, study: str, source_series: str) -> list:
    """The SEG instances in ``study`` that reference ``source_series``, read with highdicom."""
    c = PacsClient(pacs.dicomweb)
    segs = []
    for row in c.search_series(study):
        if row.modality != "SEG":
            continue
        for ds in c.iter_series(study, row.series_uid):
            seg = hd.seg.Segmentation.from_dataset(ds)
            if seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_series:
                segs.append(seg)
    return segs


def test_send_seg_and_read_it_back_with_highdicom(pacs, pacs_series, tmp_path):
    s = pacs_series["ct5"]
    vol = load(s["url"])
    labels, ls = _seg_on(vol)
    sent = send_labels(pacs.dicomweb, labels, vol, ls)
    assert sent.study_uid == s["study"] and sent.sop_class == "1.2.840.10008.5.1.4.1.1.66.4"
    segs = [g for g in _seg_series_of(pacs, s["study"], s["series"]) if g.SOPInstanceUID == sent.sop_uid]
    assert len(segs) == 1
    seg = segs[0]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "lesion"]
    refs = {str(r.ReferencedSOPInstanceUID) for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs <= set(vol.source.sop_instance_uids)
    # read back from the server, the segments land on the voxels they were drawn on
    from medplib_core.export import import_labels

    seg.save_as(tmp_path / "back.dcm")
    back = import_labels(tmp_path / "back.dcm", vol)
    assert np.array_equal(back.array, labels)


def test_convert_labels_cli_stores_a_seg(pacs, pacs_series, tmp_path):
    s = pacs_series["ct_small"]
    vol = load(s["folder"])
    labels = np.zeros(vol.shape, np.uint8)
    labels[0, 40:80, 30:90] = 1
    from medplib_core.export import write_nifti_labels

    ls = LabelSet()
    ls.add("kidney", value=1)
    nii = write_nifti_labels(tmp_path / "labels.nii.gz", labels, vol, ls)
    env = dict(os.environ, MEDPLIB_DICOMWEB_USER=USER, MEDPLIB_DICOMWEB_PASSWORD=PASSWORD,
               MEDPLIB_PACS_CACHE=str(tmp_path / "cli-cache"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "convert-labels", str(nii),
                        "--reference", s["url"], "--out", pacs.dicomweb], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"stored {pacs.dicomweb}/studies/{s['study']}/series/")
    segs = _seg_series_of(pacs, s["study"], s["series"])
    assert any([d.SegmentLabel for d in g.SegmentSequence] == ["kidney"] for g in segs)


def test_segment_cli_stores_its_mask_as_a_seg(pacs, pacs_series, tmp_path):
    s = pacs_series["mr_small"]
    env = dict(os.environ, MEDPLIB_DICOMWEB_USER=USER, MEDPLIB_DICOMWEB_PASSWORD=PASSWORD,
               MEDPLIB_PACS_CACHE=str(tmp_path / "cli-cache"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "segment", s["url"], "--box", "8", "8", "56", "56",
                        "--out", pacs.dicomweb], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["sent"]["study"] == s["study"] and report["pixels"] > 0
    segs = [g for g in _seg_series_of(pacs, s["study"], s["series"]) if g.SOPInstanceUID == report["sent"]["sop_instance_uid"]]
    assert len(segs) == 1 and segs[0].SegmentSequence[0].SegmentLabel == "segment"


def test_send_rtstruct_and_import_it_back(pacs, pacs_series, tmp_path):
    s = pacs_series["ct5"]
    vol = load(s["url"])
    labels, ls = _seg_on(vol)
    sent = send_labels(pacs.dicomweb, labels, vol, ls, kind="rtstruct")
    assert sent.sop_class == pydicom.uid.RTStructureSetStorage and sent.study_uid == s["study"]
    c = PacsClient(pacs.dicomweb)
    row = next(r for r in c.search_series(s["study"]) if r.series_uid == sent.series_uid)
    assert row.modality == "RTSTRUCT"
    ds = next(c.iter_series(s["study"], sent.series_uid))
    series_ref = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == s["series"]
    from medplib_core.export import import_labels

    ds.save_as(tmp_path / "rt.dcm")
    back = import_labels(tmp_path / "rt.dcm", vol)
    assert np.array_equal(back.array, labels)
