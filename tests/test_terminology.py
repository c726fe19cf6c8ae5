"""Coded label terminology: the searchable list, name suggestions, and the codes surviving a
DICOM SEG (read back with pydicom) and a NIfTI sidecar round trip."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

import medplib_core
from medplib_core.annotation import Label, LabelSet
from medplib_core.annotation.terminology import Term, catalogue, search, suggest, term_for_label
from medplib_core.export import import_labels, write_dicom_seg, write_nifti_labels


def test_catalogue_starts_with_the_usual_organs_and_findings():
    first = [t.type.meaning for t in catalogue()[:21]]
    assert first[:3] == ["Liver", "Spleen", "Kidney"] and "Mass" in first and "Nodule" in first
    liver = search("liver")[0]
    assert (liver.category.value, liver.category.meaning) == ("91723000", "Anatomical Structure")
    assert (liver.type.value, liver.type.scheme_designator) == ("10200004", "SCT")
    mass = search("Mass")[0]
    assert mass.display == "Morphologically Abnormal Structure / Mass"
    cava = [t.type.meaning for t in search("vena cava")]
    assert cava[0] == "Vena cava" and {"Inferior vena cava", "Superior vena cava"} <= set(cava)
    assert all("kidney" in t.display.lower() for t in search("kidn"))
    assert search("no such organ xyz") == []
    assert len(search("", limit=10)) == 10


@pytest.mark.parametrize("name,meaning,side", [
    ("kidney_right", "Kidney", "Right"), ("vertebrae_T12", "T12 vertebra", None),
    ("adrenal_gland_left", "Adrenal gland", "Left"), ("small_bowel", "Small intestine", None),
    ("inferior_vena_cava", "Inferior vena cava", None), ("Liver", "Liver", None),
    ("lung_middle_lobe_right", "Middle lobe of right lung", None),
])
def test_suggestions_from_label_names(name, meaning, side):
    term = suggest(name)
    assert term.type.meaning == meaning
    assert (term.modifier.meaning if term.modifier else None) == side


def test_names_without_a_match_fall_back_to_generic_codes():
    assert suggest("autochthon_left") is None
    assert term_for_label("my lesion 2", None).type.meaning == "Lesion"
    assert term_for_label("thing", None).display == "Anatomical Structure / Organ"
    own = search("mass")[0].to_dict()
    assert term_for_label("liver", own).type.meaning == "Mass"  # a label's own codes win


def test_label_keeps_codes_and_old_labels_still_load():
    term = suggest("kidney_left")
    lab = Label(value=3, name="kidney_left", color=(1, 2, 3), terminology=term.to_dict())
    back = Label.from_dict(json.loads(json.dumps(lab.to_dict())))
    assert Term.from_dict(back.terminology) == term
    old = {"value": 2, "name": "spleen", "color": [1, 2, 3]}  # a project from before the codes
    assert Label.from_dict(old).terminology is None
    assert Label.from_dict({**old, "terminology": {"type": "x"}}).terminology is None


@pytest.fixture(scope="module")
def coded_case(shared_data):
    vol = medplib_core.load(shared_data / "volumes" / "ct_series_j2k")
    imported = import_labels(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz", vol)
    labels = LabelSet()
    labels.add("liver", value=5, terminology=search("liver")[0].to_dict())
    labels.add("spleen", value=1)  # no codes: suggested from the name on export
    labels.add("lesion A", value=9, terminology=search("mass")[0].to_dict())
    arr = np.where(np.isin(imported.array, [1, 5]), imported.array, 0).astype(np.uint16)
    arr[10, 300:310, 200:212] = 9
    return vol, arr, labels


@pytest.mark.shared_data
def test_seg_segments_carry_the_codes_and_import_reads_them(coded_case, tmp_path):
    vol, arr, labels = coded_case
    out = write_dicom_seg(tmp_path / "coded.dcm", arr, vol, labels)
    ds = pydicom.dcmread(out)
    got = {}
    for item in ds.SegmentSequence:
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        typ = item.SegmentedPropertyTypeCodeSequence[0]
        got[str(item.SegmentLabel)] = (cat.CodeMeaning, typ.CodeValue, typ.CodeMeaning)
    assert got["liver"] == ("Anatomical Structure", "10200004", "Liver")
    assert got["spleen"] == ("Anatomical Structure", "78961009", "Spleen")
    assert got["lesion A"] == ("Morphologically Abnormal Structure", "4147007", "Mass")
    back = import_labels(out, vol)
    np.testing.assert_array_equal(back.array, arr)
    assert back.labels[5].terminology == labels[5].terminology
    assert back.labels[9].terminology == labels[9].terminology
    assert Term.from_dict(back.labels[1].terminology).type.meaning == "Spleen"


@pytest.mark.shared_data
def test_seg_keeps_laterality_as_a_type_modifier(coded_case, tmp_path):
    vol, arr, _ = coded_case
    labels = LabelSet()
    labels.add("kidney_right", value=1, terminology=suggest("kidney_right").to_dict())
    out = write_dicom_seg(tmp_path / "side.dcm", (arr == 1).astype(np.uint16), vol, labels)
    typ = pydicom.dcmread(out).SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    mod = typ.SegmentedPropertyTypeModifierCodeSequence[0]
    assert (typ.CodeMeaning, mod.CodeValue, mod.CodeMeaning) == ("Kidney", "24028007", "Right")
    assert import_labels(out, vol).labels[1].terminology == labels[1].terminology


@pytest.mark.shared_data
def test_nifti_sidecar_keeps_the_codes(coded_case, tmp_path):
    vol, arr, labels = coded_case
    out = write_nifti_labels(tmp_path / "coded.nii.gz", arr, vol, labels)
    back = import_labels(out, vol)
    assert back.labels[5].terminology == labels[5].terminology
    assert back.labels[9].terminology["type"]["meaning"] == "Mass"
    assert back.labels[1].terminology is None  # the sidecar keeps what the label had
