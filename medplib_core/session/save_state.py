"""One "unsaved changes" tracker for a session, with a mark per place its work is saved to.

Each `SaveTarget` (the project file, the autosave snapshot, a reviewed case's label file)
remembers the session's `Mark` (revision and undo-history position) it last saved. ``dirty``
compares revisions: any persistent change since (labels, prompts, chat). ``labels_dirty``
compares history positions: the labels and voxels differ from the saved ones, so undoing back
to the saved point is clean again. A save starts with ``mark()`` (taken on the session's
thread) and, once written, records it with ``saved(target, mark)``.

A target may also have a ``location`` (the project folder it is saved to): it belongs to the
session, so the title, Save and a restored autosave all know which project the work is part of,
and opening another scan forgets it. Every change is announced on ``session.events.save_state``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..text_enum import TextEnum


class SaveTarget(TextEnum):
    PROJECT = "project"  # the project folder the user saves to
    AUTOSAVE = "autosave"  # the crash-recovery snapshot
    REVIEW = "review"  # the label file of a reviewed batch case


@dataclass(frozen=True)
class Mark:
    revision: int
    history: int


class SaveState:
    """Which state of the session each target holds."""

    def __init__(self, session):
        self.session = session
        self._saved: dict[SaveTarget, Mark] = {}
        self._where: dict[SaveTarget, str] = {}

    def mark(self) -> Mark:
        """The session's state now (take it when a save starts)."""
        s = self.session
        return Mark(s.revision, s.history.state if s.history is not None else 0)

    def saved(self, target: SaveTarget, mark: Mark | None = None, location: str | None = None) -> None:
        """``target`` now holds the state ``mark`` (default: the state now); ``location``: where
        it was written (kept until another location or `forget`)."""
        self._saved[SaveTarget(target)] = mark or self.mark()
        if location is not None:
            self._where[SaveTarget(target)] = str(location)
        self._announce()

    def locate(self, target: SaveTarget, location: str | None) -> None:
        """``target`` lives at ``location`` (None: nowhere yet) without holding this state (a
        restored autosave belongs to a project that does not have its changes)."""
        if location:
            self._where[SaveTarget(target)] = str(location)
        else:
            self._where.pop(SaveTarget(target), None)
        self._announce()

    def location(self, target: SaveTarget) -> str | None:
        """Where ``target`` is saved (a project folder), or None."""
        return self._where.get(SaveTarget(target))

    def forget(self, target: SaveTarget | None = None) -> None:
        """``target`` (or every target) holds nothing of this session and lives nowhere."""
        if target is None:
            self._saved.clear()
            self._where.clear()
        else:
            self._saved.pop(SaveTarget(target), None)
            self._where.pop(SaveTarget(target), None)
        self._announce()

    def _announce(self) -> None:
        events = getattr(self.session, "events", None)
        if events is not None:
            events.save_state.emit()

    def holds(self, target: SaveTarget) -> bool:
        """True when ``target`` holds some state of this session (saved at least once)."""
        return SaveTarget(target) in self._saved

    def dirty(self, target: SaveTarget) -> bool:
        """Something changed since ``target`` was saved (or it never was)."""
        m = self._saved.get(SaveTarget(target))
        return self.session.volume is not None and (m is None or m.revision != self.session.revision)

    def labels_dirty(self, target: SaveTarget) -> bool:
        """The labels or voxels differ from those ``target`` holds (or it holds none)."""
        m = self._saved.get(SaveTarget(target))
        return self.session.volume is not None and (m is None or m.history != self.mark().history)
