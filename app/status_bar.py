"""Status bar: cursor readout (voxel, world mm, value), tool, and the engine status."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

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
    parts = [st.get("engine", "engine")]
    if st.get("device") and st["device"] != "—":
        parts.append(st["device"])
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
    return "  ·  ".join(parts)


class StatusBar(QStatusBar):
    """The window's status bar with its three permanent fields."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.cursor = QLabel("")
        self.cursor.setMinimumWidth(360)
        self.tool = QLabel("")
        self.engine = QLabel("engine: not loaded")
        self.engine.setToolTip("Segmentation engine, device, whether the current slice is already "
                               "encoded (slices around it are pre-encoded in the background), last latency")
        self.addWidget(self.cursor, 1)
        self.addPermanentWidget(self.tool)
        self.addPermanentWidget(self.engine)

    def set_cursor(self, info: dict | None, label_names: dict[int, str] | None = None) -> None:
        self.cursor.setText(format_cursor(info, label_names))

    def set_tool(self, tool: str, brush: float) -> None:
        spec = TOOL_BY_NAME.get(tool)
        text = spec.title if spec else tool
        if tool in PAINT_TOOLS:
            text += f" {brush:g} mm"
        self.tool.setText(f"Tool: {text}")

    def set_engine(self, st: dict) -> None:
        self.engine.setText(format_engine(st))
        if st.get("state") is EngineState.ERROR and st.get("message"):
            self.engine.setToolTip(st["message"])
