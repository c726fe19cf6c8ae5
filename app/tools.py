"""The prompt, edit and measurement tools: names, keys and the shared tool state (brush size in
millimetres, 3D ball, value range, ROI shape)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.text_enum import TextEnum


class Tool(TextEnum):
    """A tool's id (also its icon name and its value in the settings)."""

    NAVIGATE = "navigate"
    POINT_POS = "point_pos"
    POINT_NEG = "point_neg"
    BOX = "box"
    LASSO = "lasso"
    BRUSH = "brush"
    ERASER = "eraser"
    RULER = "ruler"
    ROI = "roi"


@dataclass(frozen=True)
class ToolSpec:
    name: Tool
    title: str
    key: str
    tip: str


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(Tool.NAVIGATE, "Navigate", "V", "Left-drag pans; no prompt"),
    ToolSpec(Tool.POINT_POS, "Positive point", "P", "Click on the object (refines a proposal)"),
    ToolSpec(Tool.POINT_NEG, "Negative point", "N", "Click on background to remove it from the proposal"),
    ToolSpec(Tool.BOX, "Box", "B", "Drag a box around the object"),
    ToolSpec(Tool.LASSO, "Lasso", "L", "Draw a free-form outline around the object"),
    ToolSpec(Tool.BRUSH, "Brush", "D", "Paint the active label ([ and ] change the size)"),
    ToolSpec(Tool.ERASER, "Eraser", "E", "Erase unlocked labels ([ and ] change the size)"),
    ToolSpec(Tool.RULER, "Ruler", "M", "Drag a line: its length in mm (drag an end to move it)"),
    ToolSpec(Tool.ROI, "ROI", "R", "Drag an ellipse or rectangle: mean, SD, min, max, area"),
)
TOOL_BY_NAME = {t.name: t for t in TOOLS}
PAINT_TOOLS = (Tool.BRUSH, Tool.ERASER)
MEASURE_TOOLS = (Tool.RULER, Tool.ROI)
BRUSH_MIN, BRUSH_MAX = 0.5, 200.0  # brush diameter, mm
ROI_SHAPES = ("ellipse", "rectangle")


class ToolState(QObject):
    """The current tool and its options, shared by every view.

    ``brush_size`` is the brush / eraser diameter in millimetres (pixels for images without a
    physical size); ``ball`` paints a 3D ball instead of a disc on the slice; ``value_range``
    (lo, hi) limits painting to voxels whose value lies in it (None: no limit);
    ``roi_shape`` is the shape the ROI tool draws."""

    changed = Signal()

    def __init__(self, tool: str = "box", brush_size: float = 10.0, parent: QObject | None = None):
        super().__init__(parent)
        self.tool = Tool(tool) if tool in TOOL_BY_NAME else Tool.BOX
        self.brush_size = float(np.clip(brush_size, BRUSH_MIN, BRUSH_MAX))
        self.ball = False
        self.value_range: tuple[float, float] | None = None
        self.roi_shape = "ellipse"

    @property
    def brush_radius(self) -> float:
        return self.brush_size / 2.0

    def set_tool(self, name: str) -> None:
        if name in TOOL_BY_NAME and name != self.tool:
            self.tool = Tool(name)
            self.changed.emit()

    def set_brush_size(self, size: float) -> None:
        size = round(float(np.clip(size, BRUSH_MIN, BRUSH_MAX)), 1)
        if size != self.brush_size:
            self.brush_size = size
            self.changed.emit()

    def grow(self, factor: float) -> None:
        """[ and ]: about 20 % smaller or 25 % larger, at least 0.5 mm."""
        step = max(0.5, abs(self.brush_size * (factor - 1)))
        self.set_brush_size(self.brush_size + (step if factor > 1 else -step))

    def set_ball(self, on: bool) -> None:
        if bool(on) != self.ball:
            self.ball = bool(on)
            self.changed.emit()

    def set_value_range(self, value_range: tuple[float, float] | None) -> None:
        value_range = None if value_range is None else tuple(sorted(float(v) for v in value_range))
        if value_range != self.value_range:
            self.value_range = value_range
            self.changed.emit()

    def set_roi_shape(self, shape: str) -> None:
        if shape in ROI_SHAPES and shape != self.roi_shape:
            self.roi_shape = shape
            self.changed.emit()
