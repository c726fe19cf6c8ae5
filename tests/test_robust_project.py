"""Damaged projects and autosaves (issue 19 items 7 and 8): a ProjectError that says what is
wrong, or a Project whose notes say what was left out; one bad autosave never hides others."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medplib_core.annotation import LabelSet
from medplib_core.errors import MedplibError
from medplib_core.project import (Project, ProjectError, PromptRecord, RecoveryStore,
                                  load_project, save_project)


def _project() -> Project:
    labels = LabelSet()
    labels.add("liver")
    labels.add("spleen")
    arr = np.zeros((3, 8, 10), np.uint16)
    arr[1, 2:5, 3:7] = 1
    m2 = np.zeros((8, 10), bool)
    m2[2:5, 3:7] = True
    prompts = [PromptRecord(1, "box", "axial", 1, {"box": [3, 2, 6, 4]}, {}, m2, "accepted", 1),
               PromptRecord(2, "click", "axial", 1, {"points": [[4, 3]]}, {}, m2.copy())]
    return Project(scan={"path": "/x/ct.nii.gz", "series": None}, labels=labels,
                   label_array=arr, prompts=prompts, chat=[{"role": "user", "text": "hi"}],
                   view={"active_label": 1})


@pytest.fixture
def saved(tmp_path) -> Path:
    folder = tmp_path / "case.medplib"
    save_project(folder, _project())
    return folder


def _doc(folder: Path) -> dict:
    return json.loads((folder / "project.json").read_text())


def _write_doc(folder: Path, doc) -> None:
    (folder / "project.json").write_text(json.dumps(doc))


def _npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _huge_npz(path: Path, name: str, shape) -> None:
    """An .npz whose member header declares ``shape`` (uint16) but holds only a few bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": "<u2", "fortran_order": False,
                                                  "shape": tuple(shape)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}.npy", b"\x93NUMPY\x02\x00" + header.getvalue()[8:] + b"\0" * 64)


# (name, change to make, words the error must contain) -- each must raise ProjectError
FATAL_DAMAGE = [
    ("list", lambda f, d: _write_doc(f, []), "not an object"),
    ("null", lambda f, d: _write_doc(f, None), "not an object"),
    ("string", lambda f, d: _write_doc(f, "x"), "not an object"),
    ("not utf-8", lambda f, d: (f / "project.json").write_bytes(b"\xff\xfe{\x00"), "unreadable"),
    ("truncated json", lambda f, d: (f / "project.json").write_text(json.dumps(d)[:50]), "unreadable"),
    ("no format", lambda f, d: _write_doc(f, {k: v for k, v in d.items() if k != "format"}), "format"),
    ("other format", lambda f, d: _write_doc(f, dict(d, format="other/1")), "not a MedPLIB"),
    ("future format", lambda f, d: _write_doc(f, dict(d, format="medplib-studio-project/99")), "newer"),
    ("format not a number", lambda f, d: _write_doc(f, dict(d, format="medplib-studio-project/x")), "unknown"),
    ("format zero", lambda f, d: _write_doc(f, dict(d, format="medplib-studio-project/0")), "unknown"),
    ("format a number", lambda f, d: _write_doc(f, dict(d, format=1)), "format"),
    ("no label file", lambda f, d: _write_doc(f, {k: v for k, v in d.items() if k != "label_file"}), "label"),
    ("label file escapes", lambda f, d: _write_doc(f, dict(d, label_file="../x.npz")), "inside the project"),
    ("label file absolute", lambda f, d: _write_doc(f, dict(d, label_file="/etc/passwd")), "inside the project"),
    ("label file a number", lambda f, d: _write_doc(f, dict(d, label_file=5)), "inside the project"),
    ("label file a list", lambda f, d: _write_doc(f, dict(d, label_file=["a"])), "inside the project"),
    ("label file missing", lambda f, d: (f / d["label_file"]).unlink(), "missing or damaged"),
    ("label file empty", lambda f, d: (f / d["label_file"]).write_bytes(b""), "missing or damaged"),
    ("label file junk", lambda f, d: (f / d["label_file"]).write_bytes(b"PK\x03\x04junk" * 9), "missing or damaged"),
    ("label file truncated", lambda f, d: (f / d["label_file"]).write_bytes(
        (f / d["label_file"]).read_bytes()[:60]), "missing or damaged"),
    ("label file a folder", lambda f, d: ((f / d["label_file"]).unlink(), (f / d["label_file"]).mkdir()),
     "missing or damaged"),
    ("no labels array", lambda f, d: _npz(f / d["label_file"], other=np.zeros(3)), "missing or damaged"),
    ("labels 2D", lambda f, d: _npz(f / d["label_file"], labels=np.zeros((8, 10), np.uint16)), "3D integer"),
    ("labels float", lambda f, d: _npz(f / d["label_file"], labels=np.zeros((3, 8, 10))), "3D integer"),
    ("labels negative", lambda f, d: _npz(f / d["label_file"], labels=-np.ones((3, 8, 10), np.int32)), "0..65535"),
    ("labels too large", lambda f, d: _npz(f / d["label_file"], labels=np.full((3, 8, 10), 70000, np.int32)), "0..65535"),
    ("labels pickled", lambda f, d: _npz(f / d["label_file"], labels=np.array([{"a": 1}], dtype=object)), "objects"),
    ("labels shape", lambda f, d: _write_doc(f, dict(d, label_shape_kji=[9, 9, 9])), "does not match"),
    ("labels shape junk", lambda f, d: _write_doc(f, dict(d, label_shape_kji="x")), "does not match"),
    ("labels declared huge", lambda f, d: _huge_npz(f / d["label_file"], "labels", (10**5, 10**5, 10**3)),
     "MEDPLIB_MAX_VOXEL_BYTES"),
]

# (name, change to make, words a note must contain) -- each loads, with a note
KEPT_DAMAGE = [
    ("prompt file missing", lambda f, d: (f / d["prompt_file"]).unlink(), "kept without their masks"),
    ("prompt file junk", lambda f, d: (f / d["prompt_file"]).write_bytes(b"junk"), "kept without their masks"),
    ("prompt file escapes", lambda f, d: _write_doc(f, dict(d, prompt_file="../../p.npz")), "kept without"),
    ("prompt file huge", lambda f, d: _huge_npz(f / d["prompt_file"], "p1_bits", (10**12,)), "kept without"),
    ("prompt masks gone", lambda f, d: _npz(f / d["prompt_file"], other=np.zeros(2)), "kept without masks"),
    ("prompt mask huge", lambda f, d: _npz(f / d["prompt_file"], p1_shape=np.array([10**6, 10**6]),
                                           p1_offset=np.zeros(2, int), p1_box=np.array([1, 1]),
                                           p1_bits=np.zeros(1, np.uint8)), "kept without masks"),
    ("prompt mask outside", lambda f, d: _npz(f / d["prompt_file"], p1_shape=np.array([8, 10]),
                                              p1_offset=np.array([7, 9]), p1_box=np.array([5, 5]),
                                              p1_bits=np.zeros(4, np.uint8)), "kept without masks"),
    ("prompts not a list", lambda f, d: _write_doc(f, dict(d, prompts={"a": 1})), "prompt list is damaged"),
    ("prompt entry a string", lambda f, d: _write_doc(f, dict(d, prompts=["x"] + d["prompts"])), "prompt entry 1"),
    ("prompt without id", lambda f, d: _write_doc(f, dict(d, prompts=[{"kind": "box"}] + d["prompts"])), "prompt entry 1"),
    ("prompt id junk", lambda f, d: _write_doc(f, dict(d, prompts=[dict(d["prompts"][0], id="x")])), "prompt entry 1"),
    ("prompt ids repeated", lambda f, d: _write_doc(f, dict(d, prompts=d["prompts"] + d["prompts"][:1])), "repeated"),
    ("prompt payload junk", lambda f, d: _write_doc(f, dict(d, prompts=[dict(d["prompts"][0], prompt=[1])])), "entry 1"),
    ("prompt label junk", lambda f, d: _write_doc(f, dict(d, prompts=[dict(d["prompts"][0], label_value="x")])), "entry 1"),
    ("labels not a list", lambda f, d: _write_doc(f, dict(d, labels={"a": 1})), "label list is damaged"),
    ("label value junk", lambda f, d: _write_doc(f, dict(d, labels=[{"value": "x"}] + d["labels"])), "label entry 1"),
    ("label value zero", lambda f, d: _write_doc(f, dict(d, labels=[dict(d["labels"][0], value=0)])), "label entry 1"),
    ("label colour junk", lambda f, d: _write_doc(f, dict(d, labels=[dict(d["labels"][0], color=[1, 2])])), "label entry 1"),
    ("label policy junk", lambda f, d: _write_doc(f, dict(d, labels=[dict(d["labels"][0], policy="x")])), "label entry 1"),
    ("labels repeated", lambda f, d: _write_doc(f, dict(d, labels=d["labels"] + d["labels"][:1])), "label entry 3"),
    ("chat not a list", lambda f, d: _write_doc(f, dict(d, chat="hello")), "chat is damaged"),
    ("chat entry junk", lambda f, d: _write_doc(f, dict(d, chat=[1, {"role": "user"}])), "chat message"),
    ("view not a mapping", lambda f, d: _write_doc(f, dict(d, view=[1])), "'view'"),
    ("scan not a mapping", lambda f, d: _write_doc(f, dict(d, scan="ct.nii.gz")), "'scan'"),
]


@pytest.mark.parametrize("name, damage, words", FATAL_DAMAGE, ids=[c[0] for c in FATAL_DAMAGE])
def test_a_project_that_cannot_be_opened_says_why(saved, name, damage, words) -> None:
    damage(saved, _doc(saved))
    with pytest.raises(ProjectError) as info:
        load_project(saved)
    assert str(saved) in str(info.value) and words in str(info.value), info.value


@pytest.mark.parametrize("name, damage, words", KEPT_DAMAGE, ids=[c[0] for c in KEPT_DAMAGE])
def test_damage_the_project_survives_is_named_in_its_notes(saved, name, damage, words) -> None:
    damage(saved, _doc(saved))
    project = load_project(saved)
    assert any(words in n for n in project.notes), project.notes
    assert project.label_array.shape == (3, 8, 10) and project.label_array[1, 3, 4] == 1


def test_an_intact_project_has_no_notes(saved) -> None:
    p = load_project(saved)
    assert p.notes == [] and p.prompts[0].mask is not None and p.prompts[0].mask.sum() == 12


def test_future_format_names_both_versions(saved) -> None:
    _write_doc(saved, dict(_doc(saved), format="medplib-studio-project/99"))
    with pytest.raises(ProjectError, match=r"format /99.*format /1"):
        load_project(saved)


# ----- property-based: whatever project.json holds, the reader answers in the family ---------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=20)
KEYS = ["format", "generation", "scan", "labels", "label_file", "label_shape_kji", "prompt_file",
        "prompts", "chat", "view", "meta"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(KEYS), JSON, min_size=1, max_size=4))
def test_any_field_values_give_a_project_or_a_project_error(saved, changes) -> None:
    doc = _doc(saved)
    good = dict(doc)
    doc.update(changes)
    (saved / "project.json").write_text(json.dumps(doc, allow_nan=True))
    try:
        project = load_project(saved)
    except ProjectError:
        pass
    else:
        assert project.label_array.dtype == np.uint16
    _write_doc(saved, good)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSON)
def test_any_json_document_gives_a_project_error(saved, doc) -> None:
    (saved / "project.json").write_text(json.dumps(doc, allow_nan=True))
    with pytest.raises(ProjectError):
        load_project(saved)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), which=st.sampled_from(["label_file", "prompt_file"]))
def test_any_bytes_in_the_array_files_give_a_project_or_a_project_error(saved, data, which) -> None:
    path = saved / _doc(saved)[which]
    keep = path.read_bytes()
    path.write_bytes(data)
    try:
        load_project(saved)
    except ProjectError:
        pass
    finally:
        path.write_bytes(keep)


# ----- 7. autosaves: one damaged record never hides the others ------------------------------
def _dead_session(root: Path, record) -> Path:
    """A session folder with a valid snapshot and the given session.json text."""
    folder = root / f"session-999999-{abs(hash(record)) % 10**6:06d}"
    save_project(folder / "snapshot.medplib", _project())
    (folder / "session.json").write_text(record)
    return folder


def test_damaged_session_records_never_hide_the_other_autosaves(tmp_path) -> None:
    store = RecoveryStore(tmp_path)
    good = json.dumps({"pid": 2**22 + 7, "scan": {"path": "/x/ct.nii.gz"},
                       "last_autosave": "2030-01-01 10:00:00", "edits": 3})
    folders = {r: _dead_session(tmp_path, r) for r in (
        good, "[]", '{"pid": "abc"}', "{broken", '{"pid": null, "scan": "x", "edits": "many"}',
        '{"pid": 1e400}', '{"pid": 12, "pid_start": "yesterday"}', '"just a string"')}
    (tmp_path / "session-empty").mkdir()  # no record, no snapshot
    (tmp_path / "session-file").write_text("not a folder")
    orphans = store.orphans()
    found = {o.folder for o in orphans}
    assert folders[good] in found
    assert {folders["[]"], folders['{"pid": "abc"}'], folders["{broken"]} <= found
    best = next(o for o in orphans if o.folder == folders[good])
    assert best.scan_path == "/x/ct.nii.gz" and "ct.nii.gz" in best.describe()
    for o in orphans:
        o.describe()  # never raises, whatever the record holds
        assert isinstance(store.load(o), Project)
    damaged = next(o for o in orphans if o.folder == folders["[]"])
    assert damaged.damaged and "damaged" in damaged.describe()


def test_a_damaged_snapshot_is_a_project_error_on_restore(tmp_path) -> None:
    store = RecoveryStore(tmp_path)
    folder = _dead_session(tmp_path, json.dumps({"pid": 2**22 + 9}))
    (folder / "snapshot.medplib" / "project.json").write_text("[]")
    (orphan,) = store.orphans()
    with pytest.raises(MedplibError):
        store.load(orphan)
