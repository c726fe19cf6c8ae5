"""Linked views: one cursor (a world point, LPS mm) shown in every view as a crosshair with the
other views' slices as reference lines.

A click with the navigate tool, or Shift with the pointer on an image (moving, or Shift+click
with any tool), sets the cursor; every view (also those hidden in the single layout) then shows
the slice through it, so switching layouts keeps the position. Scrolling a view moves the cursor
with its slice. The geometry is the core's (`medplib_core.analysis.views`): the crosshair sits
on the voxel the view's `SliceGeometry` names, the reference lines are screen rows and columns.
C toggles the display (View ▸ Crosshair); the cursor is kept either way.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPen

from medplib_core.analysis.views import Cursor, cursor_at_view, cursor_at_world, reference_lines

# the colours 3D Slicer gives its views: red axial, green coronal, yellow sagittal
VIEW_COLOURS = {"axial": QColor(240, 80, 80), "coronal": QColor(110, 210, 90), "sagittal": QColor(240, 210, 60)}
GAP_PX = 8  # the lines leave the cursor itself free


def on_pixel(v: float) -> float:
    """A screen coordinate moved to the centre of the screen pixel that holds it: a 1-pixel line
    there covers exactly that pixel (crisp at any zoom)."""
    return math.floor(v) + 0.5


class Crosshair(QObject):
    """The linked cursor of a `ViewerArea`'s views."""

    changed = Signal()  # the cursor moved or the display was toggled

    def __init__(self, viewer, parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = viewer.session
        self.enabled = False
        self.cursor: Cursor | None = None
        self._moving = False
        self._drag = None  # the view of a Shift+drag in progress
        for v in viewer.views:
            v.canvas.overlay_painters.append(lambda p, v=v: self._paint(v, p))
            v.canvas.mouse_handlers.append(lambda kind, ev, xy, v=v: self._mouse(v, kind, ev, xy))
            v.canvas.navigate_clicked.connect(lambda r, c, v=v: self.set_from_view(v, r - 0.5, c - 0.5))
            v.index_changed.connect(lambda *_, v=v: self._scrolled(v))
        viewer.doc.volume_changed.connect(self._on_volume)

    # ----- state -------------------------------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if self.enabled and self.cursor is None and self.session.volume is not None:
            v = self.viewer.active
            g = v.geometry()
            self.set_from_view(v, (g.shape[0] - 1) / 2, (g.shape[1] - 1) / 2)
        self._repaint()
        self.changed.emit()

    def set_from_view(self, view, row: float, col: float) -> None:
        """The cursor at (row, col) (voxel centres at integers) on ``view``'s slice."""
        if self.session.volume is None:
            return
        self.set_cursor(cursor_at_view(self.session.volume, view.orientation, view.index, row, col))

    def set_world(self, world) -> None:
        """The cursor at a world point (e.g. a label's centre of mass)."""
        if self.session.volume is not None:
            self.set_cursor(cursor_at_world(self.session.volume, world))

    def set_cursor(self, cursor: Cursor) -> None:
        """Show ``cursor``: every view goes to the slice through it."""
        self.cursor = cursor
        self._moving = True
        try:
            for v in self.viewer.views:
                for o, pos in cursor.views.items():
                    v.indices[o] = pos.index  # the slice each orientation shows when chosen
                if v.orientation in cursor.views:
                    v.set_index(cursor.views[v.orientation].index)
        finally:
            self._moving = False
        self._repaint()
        self.changed.emit()

    def _scrolled(self, view) -> None:
        """A view changed slice on its own (wheel, keys): the cursor follows along its axis."""
        if self._moving or self.cursor is None or view.orientation not in self.cursor.views:
            return
        pos = self.cursor.views[view.orientation]
        if pos.index != view.index:
            self.set_from_view(view, pos.row, pos.col)

    def _on_volume(self) -> None:
        self.cursor = None
        if self.enabled:
            self.set_enabled(True)  # a fresh cursor in the middle of the new scan

    def _repaint(self) -> None:
        for v in self.viewer.views:
            v.canvas.update()

    # ----- input -------------------------------------------------------------------------------
    def _mouse(self, view, kind: str, ev, xy) -> bool:
        """Shift + pointer on the image sets the cursor: hovering, or a Shift+left drag (with any
        tool; the drag is then the cursor's, not the tool's)."""
        x, y = xy
        if kind == "release":
            mine, self._drag = self._drag is view, None
            return mine
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        r, c = view.canvas.shape
        inside = 0 <= x < c and 0 <= y < r
        if kind == "press":
            if not (shift and inside and ev.button() == Qt.MouseButton.LeftButton):
                return False
            self._drag = view
        elif self._drag is not view and not (shift and inside and ev.buttons() == Qt.MouseButton.NoButton):
            return False
        if inside:
            self.set_from_view(view, y - 0.5, x - 0.5)
        return self._drag is view  # hovering also moves the pointer readout

    # ----- painting ----------------------------------------------------------------------------
    def _paint(self, view, p) -> None:
        if not self.enabled or self.cursor is None or self.session.volume is None:
            return
        pos = self.cursor.views.get(view.orientation)
        if pos is None or pos.index != view.index:
            return
        cv = view.canvas
        rows, cols = cv.shape
        centre = cv.to_screen(pos.col + 0.5, pos.row + 0.5)
        for line in reference_lines(self.session.volume, self.cursor, view.orientation):
            pen = QPen(VIEW_COLOURS.get(line.orientation, QColor(255, 255, 255)), 1.0)
            pen.setCosmetic(True)
            p.setPen(pen)
            if line.along == "row":
                y = on_pixel(cv.to_screen(0, line.position + 0.5).y())
                a, b = cv.to_screen(0, 0).x(), cv.to_screen(cols, 0).x()
                p.drawLine(QPointF(a, y), QPointF(centre.x() - GAP_PX, y))
                p.drawLine(QPointF(centre.x() + GAP_PX, y), QPointF(b, y))
            else:
                x = on_pixel(cv.to_screen(line.position + 0.5, 0).x())
                a, b = cv.to_screen(0, 0).y(), cv.to_screen(0, rows).y()
                p.drawLine(QPointF(x, a), QPointF(x, centre.y() - GAP_PX))
                p.drawLine(QPointF(x, centre.y() + GAP_PX), QPointF(x, b))
