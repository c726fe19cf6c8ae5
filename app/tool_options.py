"""Tool options beside the tools toolbar, and the 3D-ball brush strokes.

Brush and eraser: the diameter (the toolbar's mm box; [ and ]), "3D ball" (paint a ball in world
millimetres around each point of the stroke, through the slices) and "Range" (paint only voxels
whose value lies in lo..hi, e.g. an HU window; "Window" takes the shown window). ROI: ellipse or
rectangle. The footprints are the core's (`medplib_core.analysis.brush`); a stroke is one undo step.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QToolBar, QToolButton

from medplib_core.analysis.brush import brush_balls
from medplib_core.analysis.physical import has_physical_spacing
from medplib_core.annotation import LockedLabelError
from medplib_core.errors import MedplibError

from .tools import PAINT_TOOLS, ROI_SHAPES, Tool


class ToolOptions(QObject):
    """The options toolbar of a window and the handler of its views' 3D-ball strokes."""

    message = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.win = window
        self.tools = window.tools
        self.session = window.session
        bar = self.bar = QToolBar("Tool options")
        bar.setObjectName("tool_options_toolbar")
        window.addToolBar(bar)
        self.ball = QCheckBox("3D ball")
        self.ball.setToolTip("Paint / erase a ball through the slices (diameter in mm) instead of a disc")
        self.range_on = QCheckBox("Range")
        self.range_on.setToolTip("Paint only where the scan's value lies between the two numbers "
                                 "(e.g. HU); the eraser too")
        self.lo, self.hi = QDoubleSpinBox(), QDoubleSpinBox()
        for box, tip in ((self.lo, "Lowest value painted"), (self.hi, "Highest value painted")):
            box.setRange(-1e6, 1e6)
            box.setDecimals(0)
            box.setToolTip(tip)
            box.setKeyboardTracking(False)
        self.from_window = QToolButton()
        self.from_window.setText("Window")
        self.from_window.setToolTip("Take the range from the window shown (level ± width / 2)")
        self.shape = QComboBox()
        self.shape.addItems([s.capitalize() for s in ROI_SHAPES])
        self.shape.setToolTip("Shape the ROI tool draws")
        self.range_label = QLabel("–")
        self._brush_actions = [bar.addWidget(w) for w in (self.ball, self.range_on, self.lo, self.range_label,
                                                          self.hi, self.from_window)]
        self._roi_actions = [bar.addWidget(self.shape)]
        self.ball.toggled.connect(self.tools.set_ball)
        self.range_on.toggled.connect(lambda _: self._range_changed())
        self.lo.valueChanged.connect(lambda _: self._range_changed())
        self.hi.valueChanged.connect(lambda _: self._range_changed())
        self.from_window.clicked.connect(self.take_window)
        self.shape.currentIndexChanged.connect(lambda i: self.tools.set_roi_shape(ROI_SHAPES[i]))
        self.tools.changed.connect(self._sync)
        window.doc.volume_changed.connect(self._on_volume)
        for v in window.viewer.views:
            v.canvas.ball_stroke.connect(lambda pts, erase, v=v: self.on_ball_stroke(v, pts, erase))
        self._sync()

    # ----- options ---------------------------------------------------------------------------
    def _sync(self) -> None:
        t = self.tools
        paint, roi = t.tool in PAINT_TOOLS, t.tool is Tool.ROI
        for a in self._brush_actions:
            a.setVisible(paint)
        for a in self._roi_actions:
            a.setVisible(roi)
        self.bar.setVisible(paint or roi)
        if self.ball.isChecked() != t.ball:
            self.ball.setChecked(t.ball)
        for w in (self.lo, self.hi, self.from_window):
            w.setEnabled(self.range_on.isChecked())

    def _range_changed(self) -> None:
        on = self.range_on.isChecked()
        self.tools.set_value_range((self.lo.value(), self.hi.value()) if on else None)
        self._sync()

    def take_window(self) -> None:
        c, w = self.session.window
        self.lo.setValue(c - w / 2)
        self.hi.setValue(c + w / 2)
        self.range_on.setChecked(True)
        self._range_changed()

    def _on_volume(self) -> None:
        vol = self.session.volume
        unit = " mm" if has_physical_spacing(vol) else " px"
        self.win.brush_spin.setSuffix(unit)
        grey = not vol.is_colour
        self.range_on.setEnabled(grey)
        if not grey:
            self.range_on.setChecked(False)
        if grey and not self.range_on.isChecked():  # a sensible default range: the window shown
            c, w = self.session.window
            self.lo.setValue(c - w / 2)
            self.hi.setValue(c + w / 2)

    # ----- 3D ball strokes -------------------------------------------------------------------
    def on_ball_stroke(self, view, points, erase: bool) -> None:
        """Balls around the stroke's points (screen row, col → world) as one edit."""
        vol = self.session.volume
        if vol is None or not points:
            return
        g = view.geometry()
        world = [g.to_world(r, c) for r, c in points]
        try:
            stamp = brush_balls(vol, world, self.tools.brush_radius, self.tools.value_range)
            edit = self.session.paint_stamp(stamp, erase=erase,
                                            description=("erase ball" if erase else None))
        except LockedLabelError as exc:
            self.message.emit(f"{exc} (the lock in the Labels panel).")
            return
        except MedplibError as exc:
            self.message.emit(str(exc))
            return
        if edit is None:
            self.message.emit("The ball changed nothing (outside the range, locked or already so).")
