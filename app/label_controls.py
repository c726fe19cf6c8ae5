"""A row of label controls for the labels panel: fill / outline display, outline width, the
opacity of the selected label, "jump to label" (its centre of mass) and its coded meaning."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QSpinBox, QToolButton, QWidget

from .label_display import MODES, LabelStyle
from .resources import icon


class LabelControls(QWidget):
    """Display style for all labels, opacity for the active one, jump and code buttons."""

    jump_requested = Signal(int)  # label value
    code_requested = Signal(int)

    def __init__(self, doc, style: LabelStyle, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.session = doc.session
        self.style = style
        self.mode = QComboBox()
        self.mode.addItems([m.capitalize() for m in MODES])
        self.mode.setToolTip("Draw labels filled or as outlines (all labels)")
        self.width = QSpinBox()
        self.width.setRange(1, 5)
        self.width.setSuffix(" px")
        self.width.setToolTip("Outline width in image pixels")
        self.label_opacity = QSlider(Qt.Orientation.Horizontal)
        self.label_opacity.setRange(0, 100)
        self.label_opacity.setValue(100)
        self.label_opacity.setToolTip("Opacity of the selected label (the overlay slider scales filled labels)")
        self.jump = QToolButton()
        self.jump.setIcon(icon("jump"))
        self.jump.setToolTip("Jump to the selected label: its centre of mass in every view")
        self.code = QToolButton()
        self.code.setIcon(icon("code"))
        self.code.setToolTip("Choose the selected label's coded meaning (SNOMED CT / DICOM)")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.jump, self.code, self.mode, self.width):
            lay.addWidget(w)
        lay.addWidget(QLabel("Label"))
        lay.addWidget(self.label_opacity, 1)
        self.mode.currentIndexChanged.connect(lambda i: style.set_mode(MODES[i]))
        self.width.valueChanged.connect(style.set_width)
        self.label_opacity.valueChanged.connect(self._opacity)
        self.jump.clicked.connect(lambda: self._emit(self.jump_requested))
        self.code.clicked.connect(lambda: self._emit(self.code_requested))
        doc.active_label_changed.connect(lambda _: self.sync())
        doc.labels_changed.connect(self.sync)
        style.changed.connect(self.sync)
        self.sync()

    def _emit(self, signal) -> None:
        v = self.session.active_value
        if v and v in self.session.labels:
            signal.emit(v)

    def _opacity(self, percent: int) -> None:
        v = self.session.active_value
        if v and v in self.session.labels:
            self.style.set_opacity(v, percent / 100.0)

    def sync(self) -> None:
        has = bool(self.session.active_value and self.session.active_value in self.session.labels)
        for w in (self.jump, self.code, self.label_opacity):
            w.setEnabled(has)
        for w, value in ((self.width, self.style.width),
                         (self.label_opacity, round(100 * self.style.opacity_of(self.session.active_value)))):
            if w.value() != value:
                w.blockSignals(True)
                w.setValue(value)
                w.blockSignals(False)
        if self.mode.currentIndex() != MODES.index(self.style.mode):
            self.mode.blockSignals(True)
            self.mode.setCurrentIndex(MODES.index(self.style.mode))
            self.mode.blockSignals(False)
        self.width.setEnabled(self.style.outlined)
