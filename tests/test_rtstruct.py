"""RTSTRUCT export on the real CT series: read with pydicom, contours checked against the
source files' own plane geometry and rasterised back independently (Dice); import as labels."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from skimage.draw import polygon as sk_polygon

import medplib_core
from medplib_core.annotation import LabelSet
from medplib_core.annotation.terminology import suggest
from medplib_core.errors import ExportError
from medplib_core.export import import_labels, write_rtstruct
from medplib_core.export.dicom_seg import source_datasets
from medplib_core.volume import Volume


@pytest.fixture(scope="module")
def case(shared_data):
    vol = medplib_core.load(shared_data / "volumes" / "ct_series_j2k")
    imported = import_labels(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz", vol)
    imported.labels.update(2 if 2 in imported.labels else 1, terminology=suggest("spleen").to_dict())
    return vol, imported


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    vol, imported = case
    out = write_rtstruct(tmp_path_factory.mktemp("rt") / "structures.dcm", imported.array, vol,
                         imported.labels)
    return out, pydicom.dcmread(out)


def _source_planes(vol: Volume) -> dict[str, pydicom.Dataset]:
    """The source headers by SOP instance UID (these files keep it in the file meta only)."""
    out = {}
    for f in vol.source.files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out[ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID] = ds
    return out


@pytest.mark.shared_data
def test_structure_set_references_the_series(case, written):
    vol, imported = case
    out, ds = written
    assert ds.SOPClassUID == pydicom.uid.RTStructureSetStorage and ds.Modality == "RTSTRUCT"
    # this anonymised series lacks study/series UIDs: the export derives them as the SEG does
    src = source_datasets(vol)[0]
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.FrameOfReferenceUID == pydicom.dcmread(vol.source.files[0]).FrameOfReferenceUID
    frame_ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame_ref.FrameOfReferenceUID == ds.FrameOfReferenceUID
    series_ref = frame_ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in series_ref.ContourImageSequence} == set(
        vol.source.sop_instance_uids)
    present = sorted(int(v) for v in np.unique(imported.array) if v)
    assert sorted(int(r.ROINumber) for r in ds.StructureSetROISequence) == present
    names = {int(r.ROINumber): r.ROIName for r in ds.StructureSetROISequence}
    assert names[5] == "liver" and names[1] == "spleen"
    obs = {int(o.ReferencedROINumber): o for o in ds.RTROIObservationsSequence}
    assert obs[1].RTROIIdentificationCodeSequence[0].CodeMeaning == "Spleen"
    assert obs[5].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    assert sorted(p.name for p in out.parent.iterdir()) == ["structures.dcm", "structures.json"]


@pytest.mark.shared_data
def test_contours_rasterise_back_onto_the_label_map(case, written):
    """Each contour lies in its referenced image's plane; filled with scikit-image from the
    source files' own position/orientation/spacing it gives back the label map."""
    vol, imported = case
    _, ds = written
    planes = _source_planes(vol)
    k_of = {uid: k for k, uid in enumerate(vol.source.sop_instance_uids)}
    for rc in ds.ROIContourSequence:
        value = int(rc.ReferencedROINumber)
        got = np.zeros(vol.shape, bool)
        for c in rc.ContourSequence:
            assert c.ContourGeometricType == "CLOSED_PLANAR"
            pts = np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
            assert len(pts) == int(c.NumberOfContourPoints)
            uid = c.ContourImageSequence[0].ReferencedSOPInstanceUID
            src = planes[uid]
            ipp = np.asarray(src.ImagePositionPatient, dtype=float)
            iop = np.asarray(src.ImageOrientationPatient, dtype=float)
            row_dir, col_dir = iop[:3], iop[3:]  # direction of increasing column / row
            dr, dc = (float(v) for v in src.PixelSpacing)
            normal = np.cross(row_dir, col_dir)
            assert np.abs((pts - ipp) @ normal).max() < 1e-3
            col = (pts - ipp) @ row_dir / dc
            row = (pts - ipp) @ col_dir / dr
            rr, cc = sk_polygon(row, col, shape=vol.shape[1:])
            plane = np.zeros(vol.shape[1:], bool)
            plane[rr, cc] = True
            got[k_of[uid]] ^= plane
        ref = imported.array == value
        dice = 2 * np.count_nonzero(got & ref) / (np.count_nonzero(got) + np.count_nonzero(ref))
        assert dice > 0.995, (value, dice)


@pytest.mark.shared_data
def test_import_gives_the_labels_back(case, written):
    vol, imported = case
    out, _ = written
    back = import_labels(out, vol)
    np.testing.assert_array_equal(back.array, imported.array)
    assert back.notes == []
    for lab in imported.labels:
        if lab.value in back.labels:
            assert back.labels[lab.value].name == lab.name
            assert back.labels[lab.value].color == lab.color
    assert back.labels[1].terminology == imported.labels[1].terminology


@pytest.mark.shared_data
def test_holes_and_overlaps(case, tmp_path):
    vol, _ = case
    jj, ii = np.indices(vol.shape[1:])
    r = np.hypot(ii - 250, jj - 260)
    arr = np.zeros(vol.shape, np.uint16)
    arr[5:9][:, (r <= 40) & (r > 15)] = 3  # a ring: outer contour and a hole
    arr[5:9][:, r <= 6] = 4  # an island inside the hole
    labels = LabelSet()
    labels.add("ring", value=3)
    labels.add("core lesion", value=4)
    out = write_rtstruct(tmp_path / "ring.dcm", arr, vol, labels)
    ds = pydicom.dcmread(out)
    per_slice = [c for rc in ds.ROIContourSequence if rc.ReferencedROINumber == 3 for c in rc.ContourSequence]
    assert len(per_slice) == 8  # two outlines on each of four slices
    np.testing.assert_array_equal(import_labels(out, vol).array, arr)
    lesion = [o for o in ds.RTROIObservationsSequence if o.ReferencedROINumber == 4][0]
    assert lesion.RTROIIdentificationCodeSequence[0].CodeMeaning == "Lesion"


def test_needs_a_dicom_source_and_labels(tmp_path):
    vol = Volume(np.zeros((3, 8, 8), np.int16))
    labels = LabelSet()
    labels.add("x", value=1)
    with pytest.raises(ExportError, match="DICOM"):
        write_rtstruct(tmp_path / "x.dcm", np.ones(vol.shape, np.uint16), vol, labels)


@pytest.mark.shared_data
def test_empty_labels_and_wrong_grid_are_refused(case, tmp_path):
    vol, imported = case
    with pytest.raises(ExportError, match="no labelled voxels"):
        write_rtstruct(tmp_path / "e.dcm", np.zeros(vol.shape, np.uint16), vol, imported.labels)
    with pytest.raises(ExportError, match="grid"):
        write_rtstruct(tmp_path / "e.dcm", np.zeros((2, 2, 2), np.uint16), vol, imported.labels)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.shared_data
def test_convert_labels_writes_an_rtstruct(case, shared_data, tmp_path):
    """`convert-labels --format rtstruct` through the real command: the structure set it writes
    imports back to the NIfTI's labels on the series; a non-DICOM name is refused by name."""
    import subprocess
    import sys
    from pathlib import Path

    vol, imported = case
    root = Path(__file__).resolve().parents[1]
    src = shared_data / "volumes" / "ct_series_j2k_labels.nii.gz"
    ref = shared_data / "volumes" / "ct_series_j2k"

    def convert(out):
        return subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "convert-labels", str(src),
                               "--reference", str(ref), "--out", str(out), "--format", "rtstruct"],
                              cwd=root, capture_output=True, text=True, timeout=300)

    out = tmp_path / "structures.dcm"
    done = convert(out)
    assert done.returncode == 0, done.stderr
    assert pydicom.dcmread(out).Modality == "RTSTRUCT"
    np.testing.assert_array_equal(import_labels(out, vol).array, imported.array)
    bad = convert(tmp_path / "structures.nii.gz")
    assert bad.returncode == 1 and "structures.nii.gz" in bad.stderr and ".dcm" in bad.stderr
    assert not (tmp_path / "structures.nii.gz").exists()
