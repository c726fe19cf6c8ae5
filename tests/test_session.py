"""The annotation session, headless: proposals, accept with overlap policies and locks,
provenance, one undo history across voxel and label-set steps, events, saving and reopening."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from medplib_core.annotation import LabelSet, LockedLabelError, OverlapPolicy, PromptKind, PromptStatus
from medplib_core.engines.base import Prompt
from medplib_core.project import PromptRecord, load_project
from medplib_core.session import STORED, AnnotationSession, SaveTarget
from session_fixtures import ct, session  # noqa: F401 (fixtures)
from studio_support import ThresholdEngine


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def record(mask, orientation="axial", index=6, kind=PromptKind.BOX):
    return PromptRecord(id=0, kind=kind, orientation=orientation, index=index,
                        prompt={"box": [0, 0, 1, 1]}, provenance={"engine": "test"}, mask=mask)


def state(s: AnnotationSession):
    return s.labelmap.array.copy(), s.labels.to_list()


def test_accept_policies_locks_and_provenance(session):
    s = session
    shape = (128, 128)
    liver = s.add_label("liver")
    s.propose(record(square(shape, 10, 60, 10, 60)))
    edit = s.accept()
    assert edit.changed == 2500 and s.counts == {liver.value: 2500} and s.proposal is None
    [rec] = s.prompts
    assert rec.status is PromptStatus.ACCEPTED and rec.label_value == liver.value
    [entry] = s.labels[liver.value].provenance
    assert entry["prompt_id"] == rec.id and entry["kind"] == "box" and entry["slice"] == 6
    assert entry["engine"] == "test" and entry["prompt"] == {"box": [0, 0, 1, 1]}

    lesion = s.add_label("lesion", policy=OverlapPolicy.MERGE)
    s.propose(record(square(shape, 40, 80, 40, 80)))
    s.accept()  # merge: fills background only
    assert s.counts == {liver.value: 2500, lesion.value: 1600 - 400}
    s.update_label(lesion.value, "overwrite", policy=OverlapPolicy.OVERWRITE)
    s.update_label(liver.value, "lock", locked=True)
    s.propose(record(square(shape, 0, 128, 0, 128)))
    s.accept()  # overwrite, but the locked liver keeps every voxel
    assert s.counts[liver.value] == 2500 and s.counts[lesion.value] == 128 * 128 - 2500
    s.set_active(liver.value)
    s.propose(record(square(shape, 0, 5, 0, 5)))
    with pytest.raises(LockedLabelError):
        s.accept()
    assert s.proposal is not None  # still waiting for another label
    with pytest.raises(LockedLabelError):
        s.paint(square(shape, 0, 5, 0, 5), "axial", 6)
    with pytest.raises(LockedLabelError):
        s.remove_label(liver.value)


def test_one_history_for_voxel_and_label_steps(session):
    s = session
    shape = (128, 128)
    states = [state(s)]
    steps = [
        lambda: s.add_label("a"),
        lambda: s.paint(square(shape, 5, 30, 5, 30), "axial", 3),
        lambda: s.update_label(1, "rename", name="kidney"),
        lambda: (s.propose(record(square(shape, 20, 50, 20, 50), index=3)), s.accept()),
        lambda: s.add_label("b", color=(1, 2, 3)),
        lambda: s.paint(square((12, 128), 0, 12, 60, 70), "coronal", 64),
        lambda: s.remove_label(1),
        lambda: s.replace_labels(np.full(s.volume.shape, 2, np.uint16), LabelSet()),
    ]
    for step in steps:
        step()
        states.append(state(s))
    assert s.history.undo_text() == "import labels"
    for arr, labels in reversed(states[:-1]):
        assert s.undo()
        np.testing.assert_array_equal(s.labelmap.array, arr)
        assert s.labels.to_list() == labels
        assert s.counts == {v: n for v, n in s.labelmap.counts().items()}
    assert not s.undo()
    for arr, labels in states[1:]:
        assert s.redo()
        np.testing.assert_array_equal(s.labelmap.array, arr)
        assert s.labels.to_list() == labels
    assert not s.redo()
    s.undo()
    s.paint(square(shape, 0, 2, 0, 2), "axial", 0)  # a new step drops the redo branch
    assert not s.history.can_redo


def test_visibility_is_not_an_undo_step_and_events_are_named(session):
    s = session
    seen = []
    for ev in s.events:
        ev.connect(lambda *args, name=ev.name: seen.append(name))
    s.add_label("x")
    depth = s.history.depth
    s.update_label(1, visible=False)
    assert s.history.depth == depth and not s.labels[1].visible
    assert "labels" in seen and "history" in seen and "active_label" in seen
    seen.clear()
    s.paint(square((128, 128), 0, 9, 0, 9), "axial", 0)
    assert {"voxels", "counts", "history", "changed"} <= set(seen)
    seen.clear()
    s.set_window(10, 20)
    s.set_window(10, 20)
    assert seen == ["window"]


def test_3d_accept_written_on_a_worker_and_dropped_after_another_scan(session, ct):
    s = session
    mask = np.zeros(s.volume.shape, bool)
    mask[2:9, 30:70, 30:70] = True
    rec = PromptRecord(id=0, kind=PromptKind.PROPAGATE, orientation="axial", index=5, prompt={},
                       provenance={}, mask=mask)
    s.propose(rec)
    job = s.begin_accept()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("edit", s.write_accept(job)))
    t.start()
    t.join()
    assert s.finish_accept(job, out["edit"]).changed == int(mask.sum())
    assert s.counts == {1: int(mask.sum())} and s.proposal is None
    s.propose(PromptRecord(id=0, kind=PromptKind.PROPAGATE, orientation="axial", index=5, prompt={},
                           provenance={}, mask=mask))
    job = s.begin_accept()
    s.open(ct[1], str(ct[0]))  # another scan meanwhile
    assert s.finish_accept(job, s.write_accept(job)) is None
    assert not s.labelmap.array.any()


def test_stored_plane_records_follow_the_scan_grid(session):
    s = session
    vol = s.volume
    mask = square(vol.shape[1:], 10, 20, 30, 60)  # rows j 10..19, columns i 30..59 of slice k=4
    s.add_label("t")
    s.propose(record(mask, STORED, 4, PromptKind.SEGMENT))
    shown = s.proposal.mask_on(vol, "axial", 4)
    from medplib_core.slicing import slice_geometry

    geom = slice_geometry(vol, "axial", 4)
    expected = np.zeros(vol.shape, bool)
    expected[4][mask] = True
    np.testing.assert_array_equal(shown, geom.take(expected))
    assert s.proposal.mask_on(vol, "axial", 5) is None
    s.accept()
    np.testing.assert_array_equal(s.labelmap.array == 1, expected)


def test_segment_uses_the_displayed_pixels(session):
    s = session
    s.set_window(40, 400)
    p = s.segment(ThresholdEngine(), Prompt(box=(30, 30, 90, 90)), "axial", 6, PromptKind.BOX)
    assert p.record.kind is PromptKind.BOX and p.record.mask.any()
    from medplib_core.display import apply_window
    from medplib_core.slicing import slice_geometry

    np.testing.assert_array_equal(
        s.pixels("axial", 6), apply_window(slice_geometry(s.volume, "axial", 6).take(s.volume.array), 40, 400))
    assert p.record.provenance["engine"] == "threshold" and "score" in p.record.provenance


def test_save_state_tracks_revisions_and_history_positions(session):
    s = session
    st = s.save_state
    s.add_label("x")
    assert st.dirty(SaveTarget.PROJECT) and st.labels_dirty(SaveTarget.REVIEW)
    st.saved(SaveTarget.REVIEW)
    st.saved(SaveTarget.PROJECT)
    assert not st.dirty(SaveTarget.PROJECT) and not st.labels_dirty(SaveTarget.REVIEW)
    s.paint(square((128, 128), 0, 9, 0, 9), "axial", 0)
    assert st.dirty(SaveTarget.PROJECT) and st.labels_dirty(SaveTarget.REVIEW)
    s.undo()  # back to the saved labels: the review file holds them again
    assert not st.labels_dirty(SaveTarget.REVIEW) and st.dirty(SaveTarget.PROJECT)
    s.undo()  # before the label was added
    assert st.labels_dirty(SaveTarget.REVIEW) and not len(s.labels)
    s.redo()
    assert not st.labels_dirty(SaveTarget.REVIEW)


def test_save_and_reopen_round_trip(session, ct, tmp_path):
    s = session
    s.add_label("liver")
    s.propose(record(square((128, 128), 10, 60, 10, 60)))
    s.accept()
    s.propose(record(square((128, 128), 70, 90, 70, 90), index=7, kind=PromptKind.CLICK))
    s.discard()
    s.propose(record(square((128, 128), 5, 9, 5, 9), index=8))
    s.set_window(35, 70)
    folder = s.save(tmp_path / "a.medplib")
    assert not s.save_state.dirty(SaveTarget.PROJECT)
    back = AnnotationSession()
    back.load_project(ct[1], load_project(folder))
    assert back.window == (35.0, 70.0) and back.active_value == 1
    assert [(r.kind, r.status) for r in back.prompts] == [
        (PromptKind.BOX, PromptStatus.ACCEPTED), (PromptKind.CLICK, PromptStatus.DISCARDED),
        (PromptKind.BOX, PromptStatus.PROPOSED)]
    np.testing.assert_array_equal(back.labelmap.array, s.labelmap.array)
    assert back.counts == s.counts and back.labels.to_list() == s.labels.to_list()
    assert back.new_prompt_id() == 4  # ids continue after the saved ones
    again = back.save(tmp_path / "b.medplib")

    def norm(path):
        doc = json.loads(path.read_text())
        for k in ("saved", "generation", "label_file", "prompt_file"):
            doc.pop(k)
        assert doc.pop("meta") == {"project_folder": str(path.parent)}  # where it was saved
        return doc

    assert norm(again) == norm(folder)


def test_a_batch_case_carries_the_same_provenance_as_a_gui_accept(ct, tmp_path):
    from medplib_core.batch.case import CaseJob, run_case
    from medplib_core.batch.prompts_csv import PromptRow
    from medplib_core.batch.spec import Case

    path, vol = ct
    rows = [PromptRow("ct", "organ", "box", "pixel", 6, (30.0, 30.0, 90.0, 90.0), line=2)]
    job = CaseJob(Case("ct", path), rows, [], {"organ": 1}, False, False, tmp_path, "0" * 64)
    rec = run_case(job, ThresholdEngine())
    assert rec["status"] == "ok", rec.get("error")
    sidecar = json.loads((tmp_path / "labels" / "ct.json").read_text())
    [lab] = sidecar["labels"]
    [entry] = lab["provenance"]
    assert entry["kind"] == "segment" and entry["orientation"] == STORED and entry["slice"] == 6
    assert entry["engine"] == "threshold" and entry["prompt"]["box"] == [30.0, 30.0, 90.0, 90.0]
    # the same box accepted in a session on the same stored slice writes the same voxels
    s = AnnotationSession(vol, str(path))
    s.add_label("organ")
    s.segment(ThresholdEngine(), Prompt(box=(30, 30, 90, 90)), STORED, 6)
    s.accept()
    import nibabel as nib

    written = np.asarray(nib.load(str(tmp_path / "labels" / "ct.nii.gz")).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(written, s.labelmap.array)
    assert set(entry) == set(s.labels[1].provenance[0])
