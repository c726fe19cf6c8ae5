"""Label set, policy-aware edits, reverting edits and the memory-bounded undo history."""

import numpy as np
import pytest

from medplib_core.annotation import LabelMap, LabelSet, LockedLabelError, OverlapPolicy
from medplib_core.session.history import History


def _square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_undo_redo_restores_every_intermediate_state():
    labels = LabelSet()
    a = labels.add("liver")
    b = labels.add("lesion", policy=OverlapPolicy.MERGE)
    lm = LabelMap((4, 32, 32), labels)
    history = History(lm)
    slice2 = lambda arr: arr[2]  # noqa: E731  (a view of one slice)
    states = [lm.array.copy()]
    edits = [
        (_square((32, 32), 2, 20, 2, 20), a.value, {}),
        (_square((32, 32), 10, 30, 10, 30), b.value, {}),  # merge: keeps liver voxels
        (_square((32, 32), 15, 25, 0, 32), a.value, {"policy": "overwrite"}),  # takes lesion voxels
        (_square((32, 32), 0, 5, 0, 5), a.value, {"erase": True}),
    ]
    for mask, value, kw in edits:
        edit = lm.apply(mask, value, view=slice2, **kw)
        assert edit is not None and history.push("edit", edit) is not None
        states.append(lm.array.copy())
    # merge never took liver voxels
    assert np.all(states[2][2][2:20, 2:20] == a.value)
    assert np.all(states[3][2][15:25, :] == a.value)
    for expected in reversed(states[:-1]):
        history.undo()
        np.testing.assert_array_equal(lm.array, expected)
    assert not history.can_undo
    for expected in states[1:]:
        history.redo()
        np.testing.assert_array_equal(lm.array, expected)


def test_locked_labels_are_never_overwritten():
    labels = LabelSet()
    kidney = labels.add("kidney")
    tumour = labels.add("tumour")
    lm = LabelMap((1, 16, 16), labels)
    lm.apply(_square((1, 16, 16), 0, 8, 0, 8)[0][None], kidney.value)
    labels.update(kidney.value, locked=True)
    lm.apply(np.ones((1, 16, 16), bool), tumour.value, policy="overwrite")
    assert np.all(lm.array[0, :8, :8] == kidney.value)
    assert np.all(lm.array[0, 8:, :] == tumour.value)
    lm.apply(np.ones((1, 16, 16), bool), 0, erase=True)
    assert np.all(lm.array[0, :8, :8] == kidney.value)
    with pytest.raises(LockedLabelError):
        lm.apply(np.ones((1, 16, 16), bool), kidney.value)


def test_undo_memory_is_bounded_and_stores_regions_not_copies():
    labels = LabelSet()
    v = labels.add("x").value
    lm = LabelMap((64, 256, 256), labels)
    history = History(lm, budget_bytes=200_000)
    rng = np.random.default_rng(0)
    for i in range(200):
        mask = rng.random((256, 256)) > 0.5  # incompressible noise: each edit ~ tens of kB
        history.push("noise", lm.apply(mask, v, view=lambda arr, k=i % 64: arr[k], erase=bool(i % 2)))
    assert history.memory() <= 200_000 + 70_000
    assert 0 < history.depth < 200
    # a small edit on a big volume stores only its bounding box
    lm2 = LabelMap((64, 256, 256), labels)
    edit = lm2.apply(_square((256, 256), 100, 110, 100, 110), v, view=lambda arr: arr[10])
    assert edit.shape == (10, 10)


def test_view_must_be_a_view():
    labels = LabelSet()
    v = labels.add("x").value
    lm = LabelMap((2, 4, 4), labels)
    with pytest.raises(ValueError):
        lm.apply(np.ones((4, 4), bool), v, view=lambda arr: arr[0].copy())


def test_counts_and_volumes():
    labels = LabelSet()
    v = labels.add("x").value
    lm = LabelMap((2, 10, 10), labels)
    lm.apply(np.ones((2, 10, 10), bool), v)
    assert lm.counts() == {v: 200}
    assert lm.volumes_ml((0.5, 0.5, 2.0)) == pytest.approx({v: 0.1})


def test_events_reach_subscribers():
    labels = LabelSet()
    seen = []
    labels.subscribe(lambda ev, val: seen.append((ev, val)))
    lab = labels.add("a")
    labels.update(lab.value, name="b")
    labels.remove(lab.value)
    assert [e for e, _ in seen] == ["added", "changed", "removed"]
