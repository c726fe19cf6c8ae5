"""The session's measurements: rulers and ellipse / rectangle ROIs drawn on the views.

They belong to the annotation like the labels: kept in the project (``meta["measurements"]``,
a list of `to_dict`s), written into export sidecars with their measured values, and every
add, change or removal is a step of the session's one undo history (a snapshot of the list
before and after, like the label-set steps).

    m = session.measurements.add(Ruler("axial", 12, (40, 30), (80, 90)))
    m.length(session.volume)                 # mm
    session.measurements.remove(m)
    session.undo()                           # the ruler is back
"""

from __future__ import annotations

from typing import Any, Iterator

from ..analysis.measure import Measurement, measurement_from_dict, sidecar_measurements
from ..errors import MedplibError

Snapshot = list[dict[str, Any]]


class Measurements:
    """An ordered list of `Ruler`/`Roi` items of one session (announced on ``events.measurements``)."""

    def __init__(self, session):
        self._session = session
        self._items: list[Measurement] = []

    # ----- reading ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Measurement]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Measurement:
        return self._items[i]

    def index(self, item: Measurement) -> int:
        for n, m in enumerate(self._items):
            if m is item:
                return n
        raise ValueError("not a measurement of this session")

    def on_slice(self, orientation: str, index: int) -> list[Measurement]:
        """The measurements drawn on one displayed slice."""
        return [m for m in self._items if m.orientation == orientation and m.index == int(index)]

    def to_list(self) -> Snapshot:
        return [m.to_dict() for m in self._items]

    def results(self) -> list[dict[str, Any]]:
        """Geometry plus measured values (mm, HU, ...), as an export sidecar carries them."""
        vol = self._session.volume
        return sidecar_measurements(self._items, vol) if vol is not None and self._items else []

    # ----- changing (each one undo step) -----------------------------------------------------
    def add(self, item: Measurement, description: str | None = None) -> Measurement:
        if not item.name:
            item.name = self._next_name(item.kind)
        self._step(description or f"add {item.kind}", lambda: self._items.append(item))
        return item

    def add_all(self, items: list[Measurement], description: str) -> list[Measurement]:
        """Several measurements in one undo step (a label's RECIST axes)."""
        for item in items:
            item.name = item.name or self._next_name(item.kind)
        self._step(description, lambda: self._items.extend(items))
        return items

    def replace(self, item: Measurement, new: Measurement, description: str | None = None) -> Measurement:
        """Put ``new`` where ``item`` was (a moved end point or corner); keeps the name."""
        n = self.index(item)
        new.name = new.name or item.name

        def do():
            self._items[n] = new

        self._step(description or f"edit {item.kind}", do)
        return new

    def remove(self, item: Measurement) -> None:
        n = self.index(item)
        self._step(f"delete {item.kind}", lambda: self._items.pop(n))

    def clear(self) -> None:
        if self._items:
            self._step("delete all measurements", self._items.clear)

    # ----- plumbing --------------------------------------------------------------------------
    def _next_name(self, kind: str) -> str:
        stem = "ruler" if kind == "ruler" else "ROI"
        used = {m.name for m in self._items}
        n = sum(1 for m in self._items if (m.kind == "ruler") == (kind == "ruler")) + 1
        while f"{stem} {n}" in used:
            n += 1
        return f"{stem} {n}"

    def _step(self, description: str, change) -> None:
        s = self._session
        if s.volume is None:
            raise MedplibError("open a scan before measuring")
        before = self.to_list()
        change()
        s.history.push_measurements(description, before, self.to_list())
        self._announce()
        s.events.history.emit()

    def _announce(self) -> None:
        s = self._session
        s.events.measurements.emit()
        s.mark_changed()

    def restore(self, items: Snapshot, announce: bool = True) -> None:
        """Make the list equal to ``items`` (undo/redo, a project loaded); not an undo step."""
        self._items = [measurement_from_dict(d) for d in items]
        if announce:
            self._announce()

    def load(self, items: Any) -> list[str]:
        """The list from a project (entries that are no measurement are left out); notes."""
        out, notes = [], []
        for d in items if isinstance(items, list) else []:
            try:
                out.append(measurement_from_dict(d))
            except (MedplibError, AttributeError) as exc:
                notes.append(f"a saved measurement was left out: {exc}")
        self._items = out
        self._session.events.measurements.emit()
        return notes

    def reset(self) -> None:
        self._items = []
