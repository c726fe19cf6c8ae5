"""The ruler and ROI tools on the slice views: draw, move an end or corner, select, delete.

What is measured is the core's (`medplib_core.analysis.measure`: lengths in world mm, ROI mean,
SD, min, max and area in mm² with the scan's unit); the list is the session's
(`session.measurements`: undoable, kept in the project, exported in the sidecar). Positions are
screen (row, col) with voxel centres at integers, as the core stores them.
"""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPen

from medplib_core.analysis.measure import Roi, Ruler
from medplib_core.analysis.physical import length_unit

from .tools import Tool

RULER_COLOUR = QColor(0, 230, 255)
ROI_COLOUR = QColor(255, 140, 0)
SELECTED = QColor(255, 255, 255)
HANDLE_PX = 7  # how close (screen pixels) a press must be to grab an end or a corner


def format_value(v, units: str = "") -> str:
    if v is None:
        return "—"
    return f"{v:.1f}{(' ' + units) if units else ''}"


def roi_text(stats) -> list[str]:
    """The lines shown beside an ROI (and in the measurements table)."""
    u = stats.units
    area_unit = "mm²" if stats.area_unit == "mm2" else "px²"
    if stats.mean is None:
        return [f"area {stats.area:.1f} {area_unit}", f"{stats.pixels} px"]
    return [f"mean {format_value(stats.mean, u)}  SD {format_value(stats.sd)}",
            f"min {format_value(stats.min)}  max {format_value(stats.max)}",
            f"area {stats.area:.1f} {area_unit}"]


class MeasureTool(QObject):
    """Mouse handling and drawing of measurements for every view of a viewer."""

    selection_changed = Signal(object)  # the selected measurement or None

    def __init__(self, viewer, tools, parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = viewer.session
        self.tools = tools
        self.selected = None
        self._drag = None  # (view, item being replaced or None, fixed point, moving point)
        self._stats_cache: dict[str, object] = {}
        for v in viewer.views:
            v.canvas.overlay_painters.append(lambda p, v=v: self._paint(v, p))
            v.canvas.mouse_handlers.append(lambda kind, ev, xy, v=v: self._mouse(v, kind, ev, xy))
        doc = viewer.doc
        self.session.events.measurements.connect(self._on_list)
        doc.volume_changed.connect(lambda: self._stats_cache.clear())

    # ----- queries ---------------------------------------------------------------------------
    def statistics(self, roi: Roi):
        """ROI statistics, cached per drawn ROI (the scan does not change under it)."""
        key = json.dumps(roi.to_dict(), sort_keys=True)
        hit = self._stats_cache.get(key)
        if hit is None:
            if len(self._stats_cache) > 256:
                self._stats_cache.clear()
            hit = self._stats_cache[key] = roi.statistics(self.session.volume)
        return hit

    def label(self, item) -> list[str]:
        vol = self.session.volume
        if item.kind == "ruler":
            return [f"{item.length(vol):.1f} {length_unit(vol)}"]
        return roi_text(self.statistics(item))

    # ----- editing ---------------------------------------------------------------------------
    def select(self, item) -> None:
        if item is not self.selected:
            self.selected = item
            self.selection_changed.emit(item)
            self._repaint()

    def delete_selected(self) -> bool:
        if self.selected is None:
            return False
        item, self.selected = self.selected, None
        if any(m is item for m in self.session.measurements):
            self.session.measurements.remove(item)
        self.selection_changed.emit(None)
        return True

    def _on_list(self) -> None:
        if self.selected is not None and not any(m is self.selected for m in self.session.measurements):
            self.selected = None
            self.selection_changed.emit(None)
        self._repaint()

    def _repaint(self) -> None:
        for v in self.viewer.views:
            v.canvas.update()

    # ----- input -----------------------------------------------------------------------------
    def _grab(self, view, pos: QPointF):
        """(item, fixed point, moving point) for a press near an end or a corner on this slice."""
        cv = view.canvas
        for item in reversed(self.session.measurements.on_slice(view.orientation, view.index)):
            a, b = (item.start, item.end) if item.kind == "ruler" else self._corners(item)
            for fixed, moving in ((a, b), (b, a)):
                s = cv.to_screen(moving[1] + 0.5, moving[0] + 0.5)
                if abs(s.x() - pos.x()) <= HANDLE_PX and abs(s.y() - pos.y()) <= HANDLE_PX:
                    return item, fixed, moving
        return None

    @staticmethod
    def _corners(roi: Roi):
        return tuple(roi.corner0), tuple(roi.corner1)

    def _make(self, view, a, b):
        if self.tools.tool is Tool.RULER:
            return Ruler(view.orientation, view.index, a, b)
        return Roi(self.tools.roi_shape, view.orientation, view.index, a, b)

    def _mouse(self, view, kind: str, ev, xy) -> bool:
        if self.tools.tool not in (Tool.RULER, Tool.ROI) or self.session.volume is None:
            return False
        x, y = xy
        rows, cols = view.canvas.shape
        point = (min(max(y - 0.5, -0.5), rows - 0.5), min(max(x - 0.5, -0.5), cols - 0.5))
        if kind == "press":
            if ev.button() != Qt.MouseButton.LeftButton or ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                return False
            grabbed = self._grab(view, ev.position())
            if grabbed is not None:
                item, fixed, _ = grabbed
                self.select(item)
                self._drag = (view, item, fixed, point)
            elif 0 <= x < cols and 0 <= y < rows:
                self._drag = (view, None, point, point)
            else:
                return False
            return True
        if self._drag is None or self._drag[0] is not view:
            return False
        _, item, fixed, _ = self._drag
        self._drag = (view, item, fixed, point)
        if kind == "release":
            self._drag = None
            self._finish(view, item, fixed, point)
        return True

    def _finish(self, view, item, fixed, moving) -> None:
        a, b = view.canvas.to_screen(fixed[1], fixed[0]), view.canvas.to_screen(moving[1], moving[0])
        if abs(a.x() - b.x()) + abs(a.y() - b.y()) < 4:  # a click: select what is under it
            self.select(item or self._hit(view, fixed))
            return
        new = self._make(view, fixed, moving) if item is None else self._moved(item, fixed, moving)
        if item is None:
            self.select(self.session.measurements.add(new))
        else:
            self.select(self.session.measurements.replace(item, new))

    @staticmethod
    def _moved(item, fixed, moving):
        if item.kind == "ruler":
            return Ruler(item.orientation, item.index, fixed, moving, name=item.name)
        return Roi(item.shape, item.orientation, item.index, fixed, moving, name=item.name)

    def _hit(self, view, point):
        """The measurement of this slice whose line or box contains ``point`` (row, col)."""
        r, c = point
        for item in reversed(self.session.measurements.on_slice(view.orientation, view.index)):
            (r0, c0), (r1, c1) = (item.start, item.end) if item.kind == "ruler" else self._corners(item)
            pad = 2.0
            if min(r0, r1) - pad <= r <= max(r0, r1) + pad and min(c0, c1) - pad <= c <= max(c0, c1) + pad:
                return item
        return None

    # ----- painting --------------------------------------------------------------------------
    def _paint(self, view, p) -> None:
        if self.session.volume is None:
            return
        items = list(self.session.measurements.on_slice(view.orientation, view.index))
        if self._drag is not None and self._drag[0] is view:
            _, item, fixed, moving = self._drag
            items = [m for m in items if m is not item]
            try:
                items.append(self._make(view, fixed, moving) if item is None else self._moved(item, fixed, moving))
            except ValueError:
                pass
        font = QFont(view.canvas.font())
        font.setPixelSize(12)
        p.setFont(font)
        placed: list[QRectF] = []  # text boxes already drawn: the next one goes below them
        for item in items:
            self._paint_item(view.canvas, p, item, placed)

    def _paint_item(self, cv, p, item, placed: list) -> None:
        colour = SELECTED if item is self.selected else (RULER_COLOUR if item.kind == "ruler" else ROI_COLOUR)
        pen = QPen(colour, 1.5)
        pen.setCosmetic(True)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        if item.kind == "ruler":
            a = cv.to_screen(item.start[1] + 0.5, item.start[0] + 0.5)
            b = cv.to_screen(item.end[1] + 0.5, item.end[0] + 0.5)
            p.drawLine(a, b)
            for end in (a, b):
                p.drawEllipse(end, 3, 3)
            right = a if a.x() > b.x() else b
            anchor = QPointF(right.x() + 8, right.y() - 8)
        else:
            (r0, c0), (r1, c1) = self._corners(item)
            rect = QRectF(cv.to_screen(min(c0, c1) + 0.5, min(r0, r1) + 0.5),
                          cv.to_screen(max(c0, c1) + 0.5, max(r0, r1) + 0.5))
            p.drawEllipse(rect) if item.shape == "ellipse" else p.drawRect(rect)
            anchor = QPointF(rect.right() + 6, rect.bottom() - 4)
        lines = [item.name] + self.label(item) if item.name else self.label(item)
        fm = p.fontMetrics()
        w = max(fm.horizontalAdvance(t) for t in lines) + 8
        h = fm.height() * len(lines) + 4
        if anchor.x() + w > cv.width():
            anchor.setX(max(2.0, cv.width() - w - 2))
        box = QRectF(anchor.x(), anchor.y(), w, h)
        while any(box.intersects(other) for other in placed):
            box.moveTop(max(other.bottom() for other in placed if box.intersects(other)) + 2)
        placed.append(box)
        p.fillRect(box, QColor(0, 0, 0, 170))
        p.setPen(colour)
        for n, t in enumerate(lines):
            p.drawText(QPointF(box.left() + 4, box.top() + 2 + fm.ascent() + n * fm.height()), t)
