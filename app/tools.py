"""The prompt and edit tools: names, keys, the shared tool state and stroke rasterising."""

from __future__ import annotations

from dataclasses import dataclass

import cv2  # imported with the app, not on the first stroke or outline
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
)
TOOL_BY_NAME = {t.name: t for t in TOOLS}
PAINT_TOOLS = (Tool.BRUSH, Tool.ERASER)
BRUSH_MIN, BRUSH_MAX = 1, 200


class ToolState(QObject):
    """The current tool and brush size, shared by every view."""

    changed = Signal()

    def __init__(self, tool: str = "box", brush_size: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.tool = Tool(tool) if tool in TOOL_BY_NAME else Tool.BOX
        self.brush_size = int(np.clip(brush_size, BRUSH_MIN, BRUSH_MAX))

    def set_tool(self, name: str) -> None:
        if name in TOOL_BY_NAME and name != self.tool:
            self.tool = Tool(name)
            self.changed.emit()

    def set_brush_size(self, size: int) -> None:
        size = int(np.clip(size, BRUSH_MIN, BRUSH_MAX))
        if size != self.brush_size:
            self.brush_size = size
            self.changed.emit()

    def grow(self, factor: float) -> None:
        step = max(1, round(self.brush_size * (factor - 1))) if factor > 1 else -max(1, round(self.brush_size * (1 - factor)))
        self.set_brush_size(self.brush_size + step)


def stamp_segment(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], diameter: int) -> None:
    """Paint a round-capped line of ``diameter`` pixels from p0 to p1 ((x, y)) into ``mask``."""
    buf = mask.view(np.uint8) if mask.dtype == bool else mask
    r = max(0, (int(diameter) - 1) // 2)
    a = (int(round(p0[0] - 0.5)), int(round(p0[1] - 0.5)))
    b = (int(round(p1[0] - 0.5)), int(round(p1[1] - 0.5)))
    if r == 0:
        cv2.line(buf, a, b, 1, 1)
    else:
        cv2.line(buf, a, b, 1, 2 * r + 1)
        cv2.circle(buf, a, r, 1, -1)
        cv2.circle(buf, b, r, 1, -1)
