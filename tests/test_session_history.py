"""Property test: any sequence of session edits undoes and redoes through the exact states."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from medplib_core import Volume
from medplib_core.annotation import LockedLabelError, OverlapPolicy, PromptKind
from medplib_core.project import PromptRecord
from medplib_core.session import AnnotationSession

SHAPE = (3, 12, 12)
boxes = st.tuples(st.integers(0, 11), st.integers(1, 12), st.integers(0, 11), st.integers(1, 12))


def mask_of(box, shape=SHAPE[1:]):
    r0, r1, c0, c1 = box
    m = np.zeros(shape, bool)
    m[min(r0, r1):max(r0, r1), min(c0, c1):max(c0, c1)] = True
    return m


class SessionEdits(RuleBasedStateMachine):
    """The oracle: an edit that changed the labels or voxels is one step; undo goes back one."""

    @initialize(budget=st.sampled_from([1 << 30, 3000]))
    def start(self, budget):
        vol = Volume(np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE))
        self.s = AnnotationSession(vol, undo_budget_bytes=budget)
        self.s.add_label("first")
        self.s.history.clear()
        self.done = [self.snapshot()]  # states reachable by undo (oldest first), current last
        self.undone = []

    def snapshot(self):
        return self.s.labelmap.array.copy(), self.s.labels.to_list()

    def changed(self):
        now = self.snapshot()
        last = self.done[-1]
        if not (np.array_equal(now[0], last[0]) and now[1] == last[1]):
            self.done.append(now)
            self.undone.clear()
        self.done = self.done[-(self.s.history.depth + 1):]  # what the budget keeps reachable

    @rule(box=boxes, k=st.integers(0, 2), erase=st.booleans())
    def paint(self, box, k, erase):
        try:
            self.s.paint(mask_of(box), "axial", k, erase=erase)
        except LockedLabelError:
            pass
        self.changed()

    @rule(merge=st.booleans())
    def add_label(self, merge):
        if len(self.s.labels) < 4:
            self.s.add_label(policy=OverlapPolicy.MERGE if merge else OverlapPolicy.OVERWRITE)
            self.changed()

    @rule(n=st.integers(0, 3), name=st.sampled_from(["a", "b"]))
    def rename(self, n, name):
        values = [lab.value for lab in self.s.labels]
        if values:
            self.s.update_label(values[n % len(values)], "rename", name=name)
            self.changed()

    @rule(n=st.integers(0, 3))
    def toggle_lock(self, n):
        labs = list(self.s.labels)
        if labs:
            lab = labs[n % len(labs)]
            self.s.update_label(lab.value, "lock", locked=not lab.locked)
            self.changed()

    @rule(n=st.integers(0, 3))
    def activate(self, n):
        values = [lab.value for lab in self.s.labels]
        if values:
            self.s.set_active(values[n % len(values)])

    @rule(box=boxes, k=st.integers(0, 2))
    def propose_and_accept(self, box, k):
        self.s.propose(PromptRecord(id=0, kind=PromptKind.BOX, orientation="axial", index=k, prompt={},
                                    provenance={"engine": "test"}, mask=mask_of(box)))
        try:
            self.s.accept()
        except LockedLabelError:
            self.s.discard()
        self.changed()

    @rule(n=st.integers(0, 3))
    def remove_label(self, n):
        labs = list(self.s.labels)
        if labs:
            try:
                self.s.remove_label(labs[n % len(labs)].value)
            except LockedLabelError:
                pass
            self.changed()

    @rule()
    def undo(self):
        depth = self.s.history.depth
        assert self.s.undo() == (depth > 0)
        if depth:
            self.undone.append(self.done.pop())
            self.check(self.done[-1])

    @rule()
    def redo(self):
        if self.s.redo():
            self.done.append(self.undone.pop())
            self.check(self.done[-1])
        else:
            assert not self.undone

    def check(self, expected):
        arr, labels = self.snapshot()
        np.testing.assert_array_equal(arr, expected[0])
        assert labels == expected[1]

    @invariant()
    def counts_match_the_voxels(self):
        if hasattr(self, "s"):
            assert self.s.counts == self.s.labelmap.counts()
            h = self.s.history
            assert h.memory() <= h.budget_bytes or h.depth <= 1 or h.can_redo


TestSessionEdits = SessionEdits.TestCase
TestSessionEdits.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_an_accept_that_creates_its_label_undoes_as_one_step():
    """Found by the state machine: with no label left, accept creates "label 1"; one undo
    must remove both the voxels and that label (it was two steps)."""
    vol = Volume(np.zeros(SHAPE, np.int16))
    s = AnnotationSession(vol)
    for paint in (False, True):
        assert len(s.labels) == 0
        if paint:
            s.paint(mask_of((1, 5, 1, 5)), "axial", 0)
        else:
            s.propose(PromptRecord(id=0, kind=PromptKind.BOX, orientation="axial", index=1, prompt={},
                                   provenance={"engine": "test"}, mask=mask_of((2, 6, 2, 6))))
            s.accept()
        assert len(s.labels) == 1 and s.labelmap.array.any()
        assert s.undo()
        assert len(s.labels) == 0 and not s.labelmap.array.any()
        assert s.redo() and len(s.labels) == 1 and s.labelmap.array.any()
        assert s.undo()
