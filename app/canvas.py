"""`SliceCanvas`: draws one displayed slice with overlays and turns mouse input into prompts.

Image pixel (row, col) covers [col, col+1) x [row, row+1) in image coordinates; the canvas maps
them to the screen with the slice's pixel spacing, so anisotropic voxels keep their true
aspect. Left button: the current tool; right-drag: window/level; middle-drag (or the navigate
tool): pan; wheel: slices; Ctrl+wheel: zoom.

Extensions draw on a canvas and take its mouse through two lists: ``overlay_painters`` (called with the
painter in screen coordinates after the overlays) and ``mouse_handlers`` (``fn(kind, event,
(x, y))`` for "press", "move" and "release"; returning True takes the event).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPolygonF, QRegion
from PySide6.QtWidgets import QStyle, QWidget

from medplib_core.annotation import PROPOSAL_COLOR

from medplib_core.analysis.brush import stamp_stroke

from . import render
from .tools import PAINT_TOOLS, Tool, ToolState

PROMPT_POS = QColor(60, 220, 90)
PROMPT_NEG = QColor(240, 60, 60)
PROMPT_BOX = QColor(255, 210, 40)
HINT_FLAG = 0x10000  # marks the hint in `text_layout` (no Qt alignment uses this bit)
TOOL_HINTS = {
    Tool.BOX: "B: draw a box around an organ to segment it",
    Tool.POINT_POS: "P: click on an organ to segment it",
    Tool.LASSO: "L: draw around an organ to segment it",
    Tool.BRUSH: "D: paint the active label (Ctrl+N adds one)",
    Tool.NAVIGATE: "V: drag to pan · B: draw a box to segment",
}


def wrap_line(line: str, fm: QFontMetrics, width: int) -> list[str]:
    """``line`` broken at its separators (two spaces, " · ") into lines no wider than
    ``width`` where it can be."""
    if fm.horizontalAdvance(line) <= width:
        return [line]
    parts = [x for x in line.replace(" · ", "  ").split("  ") if x]
    out: list[str] = []
    for part in parts:
        if out and fm.horizontalAdvance(out[-1] + "  " + part) <= width:
            out[-1] += "  " + part
        else:
            out.append(part)
    return out


class SliceCanvas(QWidget):
    """Paints the scan, labels, proposal and prompts of one view; emits what the user drew."""

    point_clicked = Signal(float, float, bool)  # x, y (image coords), positive
    box_drawn = Signal(float, float, float, float)  # x0, y0, x1, y1
    lasso_drawn = Signal(object)  # list of (x, y)
    stroke_done = Signal(object, bool)  # bool mask (rows, cols), erase
    ball_stroke = Signal(object, bool)  # [(row, col), ...] voxel-centre positions of a 3D-ball stroke, erase
    slice_step = Signal(int)
    cursor_moved = Signal(object)  # (row, col) floats, or None when the cursor leaves
    window_drag = Signal(float, float)  # dx, dy in screen pixels
    focused = Signal()
    navigate_clicked = Signal(float, float)  # (row, col): a click with the navigate tool

    def __init__(self, tools: ToolState, parent: QWidget | None = None):
        super().__init__(parent)
        self.tools = tools
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 160)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.scan_image = None  # QImage of the windowed slice
        self.label_image = None  # QImage overlay or None
        self.proposal_image = None  # the hatch over the proposal's own box ...
        self.proposal_at = (0, 0)  # ... whose top-left pixel is this (column, row) of the slice
        self.proposal_outline: QPainterPath | None = None
        self.proposal_prompt: dict | None = None
        self.pending_prompt: dict | None = None
        self.opacity = 0.45
        self.labels_outlined = False  # outlines are drawn at full strength (their own opacity)
        self.shape = (1, 1)  # displayed (rows, cols)
        self.spacing = (1.0, 1.0)  # (row_mm, col_mm)
        self.letters = ("", "", "", "")
        self.corner_text = ["", "", "", ""]  # top-left, top-right, bottom-left, bottom-right
        self.show_hint = False  # nothing drawn yet: say how the tool starts
        self.stroke_color = QColor(230, 25, 75)
        self.zoom = 1.0
        self.pan = QPointF(0, 0)
        self._drag = None  # (button kind, start screen pos, extra)
        self._stroke: np.ndarray | None = None
        self.stroke_limit = None  # mask -> the part the stroke will change (the view's value range)
        self._stroke_img = None
        self._last_img_pos: tuple[float, float] | None = None
        self._lasso: list[tuple[float, float]] = []
        self._box: tuple[QPointF, QPointF] | None = None
        self._hover: QPointF | None = None
        self.smooth = True
        self.overlay_painters: list = []  # fn(painter) in screen coordinates, after the overlays
        self.mouse_handlers: list = []  # fn(kind, event, (x, y)) -> True when it took the event
        self._ball_points: list[tuple[float, float]] = []
        tools.changed.connect(self.update)

    # ----- geometry --------------------------------------------------------------------------
    def set_slice_shape(self, shape: tuple[int, int], spacing: tuple[float, float]) -> None:
        if tuple(shape) != self.shape or tuple(spacing) != self.spacing:
            self.shape, self.spacing = tuple(shape), tuple(spacing)
            self._cancel_drawing()

    def _scale(self) -> float:
        h_mm = self.shape[0] * self.spacing[0]
        w_mm = self.shape[1] * self.spacing[1]
        return min(self.width() / max(w_mm, 1e-6), self.height() / max(h_mm, 1e-6)) * self.zoom

    def _origin(self, s: float) -> QPointF:
        w = self.shape[1] * self.spacing[1] * s
        h = self.shape[0] * self.spacing[0] * s
        return QPointF((self.width() - w) / 2 + self.pan.x(), (self.height() - h) / 2 + self.pan.y())

    def to_image(self, pos: QPointF) -> tuple[float, float]:
        """Screen position → image (x, y) = (col, row), continuous."""
        s = self._scale()
        o = self._origin(s)
        return (pos.x() - o.x()) / (self.spacing[1] * s), (pos.y() - o.y()) / (self.spacing[0] * s)

    def to_screen(self, x: float, y: float) -> QPointF:
        s = self._scale()
        o = self._origin(s)
        return QPointF(o.x() + x * self.spacing[1] * s, o.y() + y * self.spacing[0] * s)

    def image_rect(self) -> QRectF:
        return QRectF(self.to_screen(0, 0), self.to_screen(self.shape[1], self.shape[0]))

    def prompt_rect(self, prompt: dict | None) -> QRect:
        """The screen area a prompt's drawing covers (points, box, polygon), with its pens."""
        if not prompt:
            return QRect()
        pts = [tuple(v) for v in prompt.get("points") or []] + [tuple(v) for v in prompt.get("polygon") or []]
        if prompt.get("box"):
            x0, y0, x1, y1 = prompt["box"]
            pts += [(x0, y0), (x1, y1)]
        if not pts:
            return QRect()
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        r = QRectF(self.to_screen(min(xs), min(ys)), self.to_screen(max(xs), max(ys))).normalized()
        return r.toAlignedRect().adjusted(-9, -9, 9, 9)  # a point's marker is 5 px + its pen

    def proposal_region(self) -> QRegion:
        """Where the proposal (hatch, outline, its prompt) and the overlay texts are painted: what
        a new or discarded proposal changes on an unchanged slice (the corner texts say
        "Enter: accept", the hint comes and goes)."""
        region = QRegion()
        if self.proposal_image is not None:
            x, y = self.proposal_at
            w, h = self.proposal_image.width(), self.proposal_image.height()
            r = QRectF(self.to_screen(x, y), self.to_screen(x + w, y + h)).normalized()
            region += r.toAlignedRect().adjusted(-4, -4, 4, 4)  # the outline's pens
        rect = self.prompt_rect(self.proposal_prompt)
        if not rect.isEmpty():
            region += rect
        for _, _, rect, _ in self.text_layout():
            region += rect.adjusted(-2, -2, 2, 2)  # the texts' shadow
        return region

    def update_prompt(self, prompt: dict | None) -> None:
        """Repaint only where ``prompt`` is drawn (a click's marker costs a fraction of a frame)."""
        rect = self.prompt_rect(prompt)
        if not rect.isEmpty():
            self.update(rect)

    def fit(self) -> None:
        self.zoom, self.pan = 1.0, QPointF(0, 0)
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        anchor = anchor or QPointF(self.width() / 2, self.height() / 2)
        x, y = self.to_image(anchor)
        self.zoom = float(np.clip(self.zoom * factor, 0.1, 50.0))
        p = self.to_screen(x, y)
        self.pan += anchor - p
        self.update()

    # ----- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        self._fill_background(p)
        if self.scan_image is not None:
            s = self._scale()
            o = self._origin(s)
            p.save()
            p.translate(o)
            p.scale(self.spacing[1] * s, self.spacing[0] * s)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
            p.drawImage(0, 0, self.scan_image)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            if self.label_image is not None:
                p.setOpacity(1.0 if self.labels_outlined else self.opacity)
                p.drawImage(0, 0, self.label_image)
                p.setOpacity(1.0)
            if self.proposal_image is not None:
                p.drawImage(QPointF(*self.proposal_at), self.proposal_image)
            if self._stroke_img is not None:
                p.setOpacity(0.6)
                p.drawImage(0, 0, self._stroke_img)
                p.setOpacity(1.0)
            self._paint_outline(p)
            self._paint_prompt(p, self.proposal_prompt, dashed=False)
            self._paint_prompt(p, self.pending_prompt, dashed=True)
            self._paint_drawing(p)
            p.restore()
            self._paint_brush_cursor(p, s)
            for paint in self.overlay_painters:
                p.save()
                paint(p)
                p.restore()
        self._paint_text(p)
        p.end()

    def _fill_background(self, p: QPainter) -> None:
        """Black outside the image only: filling the whole widget costs as much as the image."""
        black = QColor(0, 0, 0)
        if self.scan_image is None:
            p.fillRect(self.rect(), black)
            return
        r = self.image_rect().toAlignedRect().adjusted(1, 1, -1, -1) & self.rect()
        w, h = self.width(), self.height()
        if r.isEmpty():
            p.fillRect(self.rect(), black)
            return
        p.fillRect(0, 0, w, r.top(), black)
        p.fillRect(0, r.bottom() + 1, w, h - r.bottom() - 1, black)
        p.fillRect(0, r.top(), r.left(), r.height(), black)
        p.fillRect(r.right() + 1, r.top(), w - r.right() - 1, r.height(), black)

    def _cosmetic(self, color: QColor, width: float = 1.5, dashed: bool = False) -> QPen:
        pen = QPen(color, width)
        pen.setCosmetic(True)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        return pen

    def _paint_outline(self, p: QPainter) -> None:
        """The proposal's outline: white dashes over black ("marching ants"), a style no
        label has (labels are solid fills), visible on dark and bright tissue alike."""
        if self.proposal_outline is None or self.proposal_outline.isEmpty():
            return
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(self._cosmetic(QColor(0, 0, 0), 2.5))
        p.drawPath(self.proposal_outline)
        dash = self._cosmetic(QColor(*PROPOSAL_COLOR), 2.0)
        dash.setDashPattern([4.0, 3.0])
        p.setPen(dash)
        p.drawPath(self.proposal_outline)

    def _paint_prompt(self, p: QPainter, prompt: dict | None, dashed: bool) -> None:
        if not prompt:
            return
        p.setBrush(Qt.BrushStyle.NoBrush)
        if prompt.get("box"):
            x0, y0, x1, y1 = prompt["box"]
            p.setPen(self._cosmetic(PROMPT_BOX, 1.5, dashed))
            p.drawRect(QRectF(QPointF(x0, y0), QPointF(x1, y1)))
        if prompt.get("polygon"):
            p.setPen(self._cosmetic(PROMPT_BOX, 1.5, dashed))
            p.drawPolygon(QPolygonF([QPointF(x, y) for x, y in prompt["polygon"]]))
        pts = prompt.get("points") or []
        labs = prompt.get("point_labels") or [1] * len(pts)
        if pts:
            t = p.transform()
            p.save()
            p.resetTransform()
            for (x, y), lab in zip(pts, labs):
                c = t.map(QPointF(x, y))
                col = PROMPT_POS if lab else PROMPT_NEG
                p.setPen(QPen(QColor(0, 0, 0), 1))
                p.setBrush(col)
                p.drawEllipse(c, 5, 5)
                p.setPen(QPen(QColor(255, 255, 255), 1.5))
                p.drawLine(c + QPointF(-3, 0), c + QPointF(3, 0))
                if lab:
                    p.drawLine(c + QPointF(0, -3), c + QPointF(0, 3))
            p.restore()

    def _paint_drawing(self, p: QPainter) -> None:
        if self._box is not None:
            a, b = self._box
            p.setPen(self._cosmetic(PROMPT_BOX, 1.5, True))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(a, b).normalized())
        if len(self._lasso) > 1:
            p.setPen(self._cosmetic(PROMPT_BOX, 1.5, True))
            p.drawPolyline(QPolygonF([QPointF(x, y) for x, y in self._lasso]))

    def _paint_brush_cursor(self, p: QPainter, s: float) -> None:
        if self.tools.tool not in PAINT_TOOLS or self._hover is None:
            return
        r = self.tools.brush_radius * s  # s: screen pixels per mm
        p.setPen(self._cosmetic(QColor(255, 255, 255), 1.0))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(self._hover, r, r)
        if self.tools.ball:  # a ball: a second, dotted ring
            p.setPen(self._cosmetic(QColor(255, 255, 255), 1.0, dashed=True))
            p.drawEllipse(self._hover, r * 0.7, r * 0.7)

    def _fonts(self) -> tuple[QFont, QFont]:
        font = QFont(self.font())
        font.setPixelSize(13)
        bold = QFont(font)
        bold.setBold(True)
        bold.setPixelSize(15)
        return font, bold

    def text_layout(self) -> list[tuple[QFont, str, QRect, int]]:
        """Where each overlay text goes: (font, text, rectangle, alignment). The corner texts
        keep clear of the orientation letters: a line too wide for its half of the edge wraps
        at its separators, then is elided; a corner keeps only the lines the edge has room for."""
        font, bold = self._fonts()
        fm, fmb = QFontMetrics(font), QFontMetrics(bold)
        m, gap = 6, 8
        r = self.rect().adjusted(m, m, -m, -m)
        top, bottom, left, right = self.letters
        A = Qt.AlignmentFlag
        out: list[tuple[QFont, str, QRect, int]] = []
        letter_rects = {}
        for text, align in ((top, A.AlignHCenter | A.AlignTop), (bottom, A.AlignHCenter | A.AlignBottom),
                            (left, A.AlignLeft | A.AlignVCenter), (right, A.AlignRight | A.AlignVCenter)):
            if text:
                size = fmb.size(0, text)
                rect = QStyle.alignedRect(Qt.LayoutDirection.LeftToRight, align, size, r)
                letter_rects[align] = rect
                out.append((bold, text, rect, int(align)))
        line_h = fm.height()
        side_h = max((fmb.height() for t in (left, right) if t), default=0)
        rows = max(1, int((r.height() / 2 - side_h / 2 - gap) // line_h))  # lines above/below the side letters
        for n, (text, align) in enumerate(zip(self.corner_text, (
                A.AlignLeft | A.AlignTop, A.AlignRight | A.AlignTop,
                A.AlignLeft | A.AlignBottom, A.AlignRight | A.AlignBottom))):
            if not text:
                continue
            edge = top if n < 2 else bottom
            room = int((r.width() - (fmb.horizontalAdvance(edge) if edge else 0)) / 2 - gap)
            lines = []
            for line in text.split("\n"):
                lines += wrap_line(line, fm, room)
            lines = lines[:rows] if n < 2 else lines[-rows:]
            lines = [fm.elidedText(x, Qt.TextElideMode.ElideRight, max(room, 10)) for x in lines]
            block = "\n".join(lines)
            size = QSize(max(fm.horizontalAdvance(x) for x in lines) + 1, line_h * len(lines))
            rect = QStyle.alignedRect(Qt.LayoutDirection.LeftToRight, align, size, r)
            out.append((font, block, rect, int(align)))
        hint = self.hint_text()
        if hint:
            width = max(r.width() - 2 * gap, 40)
            text = fm.elidedText(hint, Qt.TextElideMode.ElideRight, width)
            size = QSize(fm.horizontalAdvance(text) + 16, line_h + 8)
            centre = QPoint(r.center().x(), r.top() + int(r.height() * 0.78))
            out.append((font, text, QRect(centre - QPoint(size.width() // 2, size.height() // 2), size),
                        int(A.AlignCenter) | HINT_FLAG))
        return out

    def hint_text(self) -> str:
        """What to do on an empty canvas: open a scan, or how the current tool starts."""
        if self.scan_image is None:
            return "Open a scan: Ctrl+O, or drop a file or folder here"
        if not self.show_hint:
            return ""
        return TOOL_HINTS.get(self.tools.tool, "")

    def _paint_text(self, p: QPainter) -> None:
        for f, text, rect, align in self.text_layout():
            p.setFont(f)
            if align & HINT_FLAG:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(0, 0, 0, 150))
                p.drawRoundedRect(QRectF(rect), 6, 6)
                p.setPen(QColor(255, 255, 255))
                p.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)
                continue
            p.setPen(QColor(0, 0, 0, 200))
            p.drawText(rect.translated(1, 1), align, text)
            p.setPen(QColor(255, 220, 120) if f.bold() else QColor(235, 235, 235))
            p.drawText(rect, align, text)

    @property
    def hovered(self) -> bool:
        """The pointer is on this canvas."""
        return self._hover is not None

    def pointer_left(self) -> None:
        """The pointer is elsewhere (a leave event, or a press on another widget)."""
        if self._hover is not None:
            self._hover = None
            self.cursor_moved.emit(None)
            self.update()

    def focusInEvent(self, ev) -> None:  # noqa: N802 (keyboard focus: the user works in this view)
        super().focusInEvent(ev)
        self.focused.emit()

    # ----- mouse -----------------------------------------------------------------------------
    def _inside(self, x: float, y: float) -> bool:
        return 0 <= x < self.shape[1] and 0 <= y < self.shape[0]

    def _clip(self, x: float, y: float) -> tuple[float, float]:
        return float(np.clip(x, 0, self.shape[1])), float(np.clip(y, 0, self.shape[0]))

    def _handled(self, kind: str, ev) -> bool:
        xy = self.to_image(ev.position())
        return any(fn(kind, ev, xy) for fn in list(self.mouse_handlers))

    def _stamp(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        """The stroke from image point a to b ((x, y)) into the preview, as the core paints it."""
        pts = [(a[1] - 0.5, a[0] - 0.5), (b[1] - 0.5, b[0] - 0.5)]  # (row, col) of pixel centres
        stamp_stroke(self._stroke, self.spacing, pts, self.tools.brush_radius)

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        self.setFocus()
        self.focused.emit()
        if self.scan_image is not None and self._handled("press", ev):
            self.update()
            return
        pos = ev.position()
        btn = ev.button()
        if btn == Qt.MouseButton.RightButton:
            self._drag = ("window", pos)
        elif btn == Qt.MouseButton.MiddleButton or (btn == Qt.MouseButton.LeftButton and self.tools.tool is Tool.NAVIGATE):
            self._drag = ("pan", pos)
            self._press = pos
        elif btn == Qt.MouseButton.LeftButton and self.scan_image is not None:
            tool = self.tools.tool
            x, y = self.to_image(pos)
            if tool in (Tool.POINT_POS, Tool.POINT_NEG):
                if self._inside(x, y):  # its marker repaints only its own area (`update_prompt`)
                    self.point_clicked.emit(x, y, tool is Tool.POINT_POS)
                return  # a full repaint here would share the cores with the model's decoding
            elif tool is Tool.BOX:
                self._box = (QPointF(*self._clip(x, y)), QPointF(*self._clip(x, y)))
                self._drag = ("box", pos)
            elif tool is Tool.LASSO:
                self._lasso = [self._clip(x, y)]
                self._drag = ("lasso", pos)
            elif tool in PAINT_TOOLS:
                self._stroke = np.zeros(self.shape, dtype=bool)
                self._stamp((x, y), (x, y))
                self._ball_points = [(y - 0.5, x - 0.5)]
                self._last_img_pos = (x, y)
                self._refresh_stroke()
                self._drag = ("paint", pos)
        self.update()

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        pos = ev.position()
        x, y = self.to_image(pos)
        self._hover = pos
        self.cursor_moved.emit((y, x) if self._inside(x, y) else None)
        if self.scan_image is not None and self._handled("move", ev):
            self.update()
            return
        if self._drag is not None:
            kind, last = self._drag
            if kind == "window":
                d = pos - last
                self.window_drag.emit(d.x(), d.y())
                self._drag = (kind, pos)
            elif kind == "pan":
                self.pan += pos - last
                self._drag = (kind, pos)
            elif kind == "box" and self._box is not None:
                self._box = (self._box[0], QPointF(*self._clip(x, y)))
            elif kind == "lasso":
                cx, cy = self._clip(x, y)
                lx, ly = self._lasso[-1]
                if abs(cx - lx) + abs(cy - ly) >= 0.5:
                    self._lasso.append((cx, cy))
            elif kind == "paint" and self._stroke is not None:
                self._stamp(self._last_img_pos, (x, y))
                self._ball_points.append((y - 0.5, x - 0.5))
                self._last_img_pos = (x, y)
                self._refresh_stroke()
        self.update()

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        if self.scan_image is not None and self._handled("release", ev):
            self.update()
            return
        if self._drag is None:
            return
        kind = self._drag[0]
        self._drag = None
        if kind == "pan" and ev.button() == Qt.MouseButton.LeftButton:
            moved = ev.position() - getattr(self, "_press", ev.position())
            x, y = self.to_image(ev.position())
            if abs(moved.x()) + abs(moved.y()) < 3 and self._inside(x, y):
                self.navigate_clicked.emit(y, x)
        if kind == "box" and self._box is not None:
            a, b = self._box
            self._box = None
            x0, x1 = sorted((a.x(), b.x()))
            y0, y1 = sorted((a.y(), b.y()))
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                self.box_drawn.emit(x0, y0, x1, y1)
        elif kind == "lasso":
            pts, self._lasso = self._lasso, []
            if len(pts) >= 3:
                self.lasso_drawn.emit(pts)
        elif kind == "paint" and self._stroke is not None:
            stroke, self._stroke, self._stroke_img = self._stroke, None, None
            if self.tools.ball:  # the core paints the balls around the stroke's points in 3D
                self.ball_stroke.emit(list(self._ball_points), self.tools.tool is Tool.ERASER)
            else:
                self.stroke_done.emit(stroke, self.tools.tool is Tool.ERASER)
        self.update()

    def _refresh_stroke(self) -> None:
        color = (255, 255, 255) if self.tools.tool is Tool.ERASER else self.stroke_color.getRgb()[:3]
        shown = self._stroke if self.stroke_limit is None else self.stroke_limit(self._stroke)
        self._stroke_img = render.mask_qimage(shown, color, alpha=200)

    def _cancel_drawing(self) -> None:
        self._drag, self._box, self._lasso = None, None, []
        self._stroke = self._stroke_img = None

    def wheelEvent(self, ev) -> None:  # noqa: N802
        dy = ev.angleDelta().y()
        if not dy:
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.15 ** (dy / 120.0), ev.position())
        else:
            steps = int(dy / 120) or (1 if dy > 0 else -1)
            self.slice_step.emit(-steps)
        ev.accept()

    def leaveEvent(self, ev) -> None:  # noqa: N802
        self.pointer_left()

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        step = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
                Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10,
                Qt.Key.Key_Home: -10**6, Qt.Key.Key_End: 10**6}.get(Qt.Key(ev.key()))
        if step is not None:
            self.slice_step.emit(step)
            ev.accept()
            return
        super().keyPressEvent(ev)
