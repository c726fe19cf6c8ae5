"""Status bar: cursor readout (voxel, world mm, value), tool, and the engine status."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton, QWidget

from .engine_controller import EngineState
from .tools import PAINT_TOOLS, TOOL_BY_NAME


def format_value(value, units: str) -> str:
    v = np.asarray(value)
    if v.ndim:  # colour
        return "RGB " + ",".join(str(int(c)) for c in v.reshape(-1)[:3])
    if v.dtype.kind in "iub":
        text = str(int(v))
    else:
        text = f"{float(v):.4g}"
    return f"{text} {units}".strip()


def format_cursor(info: dict | None, label_names: dict[int, str] | None = None) -> str:
    if not info:
        return ""
    i, j, k = info["ijk"]
    text = f"voxel ({i}, {j}, {k})   "
    if info.get("world") is not None:
        x, y, z = info["world"]
        text += f"{x:.1f}, {y:.1f}, {z:.1f} mm (LPS)   "
    text += format_value(info["value"], info["units"])
    lab = info.get("label", 0)
    if lab:
        text += f"   label {lab}" + (f" {label_names.get(lab, '')}" if label_names else "")
    return text


def format_engine(st: dict) -> str:
    """Engine, state, whether the slice is encoded, last latency, then the device (the longest
    part last: the field elides from its end)."""
    parts = [st.get("engine", "engine")]
    state = st.get("state")
    words = {EngineState.NOT_LOADED: "model not loaded", EngineState.LOADING: "loading…",
             EngineState.ERROR: "unavailable", EngineState.BUSY: "segmenting…"}
    if state in words:
        parts.append(words[state])
    enc = st.get("encoded")
    if enc is not None:
        parts.append("slice encoded" if enc else "slice not encoded yet")
    lat = st.get("latency_ms")
    if lat is not None:
        parts.append(f"last {lat:.0f} ms")
    if st.get("device") and st["device"] != "—":
        parts.append(st["device"])
    return "  ·  ".join(parts)


class StatusBar(QStatusBar):
    """The window's status bar with its three permanent fields.

    A message too long for the room left of the permanent fields hides them while it shows
    (they come back with the next message or when it times out), so no message is cut off."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.cursor = QLabel("")
        self.cursor.setMinimumWidth(360)
        self.tool = QLabel("")
        self.engine = QLabel("engine: not loaded")
        self.engine.setToolTip("Segmentation engine, device, whether the current slice is already "
                               "encoded (slices around it are pre-encoded in the background), last latency")
        self.task_label = QLabel("")
        self.task_bar = QProgressBar()
        self.task_bar.setMaximumWidth(140)
        self.task_bar.setMaximumHeight(16)
        self.task_cancel = QToolButton()
        self.task_cancel.setText("✕")
        self.task_cancel.setToolTip("Cancel (Esc)")
        self.addWidget(self.cursor, 1)
        for w in (self.task_label, self.task_bar, self.task_cancel):
            self.addPermanentWidget(w)
            w.hide()
        self.addPermanentWidget(self.tool)
        self.addPermanentWidget(self.engine)
        self.engine.setMaximumWidth(320)  # long states are elided; the tooltip has them whole
        self._cancel = None
        self._yielded: list[QWidget] = []  # permanent fields hidden for a long message
        self.messageChanged.connect(self._message_changed)

    # ----- messages ----------------------------------------------------------------------------
    def message_room(self) -> int:
        """Pixels a message has: the bar's width less the visible permanent fields."""
        fields = [w for w in (self.task_label, self.task_bar, self.task_cancel, self.tool, self.engine)
                  if not w.isHidden()]
        spacing = self.layout().spacing() if self.layout() is not None else 6
        return self.width() - sum(w.sizeHint().width() + spacing for w in fields) - 24

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 (Qt API)
        self._restore_fields()
        if text and self.fontMetrics().horizontalAdvance(text) > self.message_room():
            for w in (self.tool, self.engine):  # the task (propagation) stays in view
                if not w.isHidden():
                    w.hide()
                    self._yielded.append(w)
        self.setToolTip(text)
        super().showMessage(text, timeout)

    def _message_changed(self, text: str) -> None:
        if not text:
            self._restore_fields()
            self.setToolTip("")

    def _restore_fields(self) -> None:
        while self._yielded:
            self._yielded.pop().show()

    # ----- a background task (3D propagation) ------------------------------------------------
    def start_task(self, text: str, on_cancel) -> None:
        """Show a running task with its progress and a cancel button."""
        self._cancel = on_cancel
        self.task_label.setText(text)
        self.task_bar.setRange(0, 0)  # busy until the first progress
        for w in (self.task_label, self.task_bar, self.task_cancel):
            w.show()
        try:
            self.task_cancel.clicked.disconnect()
        except (RuntimeError, TypeError):
            pass
        self.task_cancel.clicked.connect(lambda: self._cancel() if self._cancel else None)

    def task_progress(self, done: int, total: int) -> None:
        self.task_bar.setRange(0, max(int(total), 1))
        self.task_bar.setValue(min(int(done), max(int(total), 1)))
        self.task_bar.setFormat(f"{done}/{total}")

    def end_task(self) -> None:
        self._cancel = None
        for w in (self.task_label, self.task_bar, self.task_cancel):
            w.hide()

    @property
    def task_running(self) -> bool:
        return not self.task_bar.isHidden()

    def set_cursor(self, info: dict | None, label_names: dict[int, str] | None = None) -> None:
        self.cursor.setText(format_cursor(info, label_names))

    def set_tool(self, tool: str, brush: float) -> None:
        spec = TOOL_BY_NAME.get(tool)
        text = spec.title if spec else tool
        if tool in PAINT_TOOLS:
            text += f" {brush:g} mm"
        self.tool.setText(f"Tool: {text}")

    def set_engine(self, st: dict) -> None:
        text = format_engine(st)
        self.engine.setText(self.engine.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, 316))
        self.engine.setToolTip(text if st.get("state") is not EngineState.ERROR else st.get("message") or text)

