"""How labels are drawn on the slices: filled or as outlines, with an opacity per label.

`LabelStyle` builds a view's label overlay from the label slice: each visible label's colour
with its own opacity (premultiplied ARGB, one table lookup), and in outline mode only the
labels' edge pixels (`medplib_core.analysis.contours.label_edges`), drawn solid at full
strength; the panel's opacity slider scales filled labels. Outlines are solid lines in the
label's colour; proposals keep their own look (white hatching, black/white dashes), so
neither can be taken for the other. The style is view state: saved with the project
(``view["label_display"]``) and restored with it.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.analysis.contours import label_edges

from . import render

MODES = ("fill", "outline")


class LabelStyle(QObject):
    """Fill or outline, outline width in pixels and per-label opacity (0..1, default 1)."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.mode = "fill"
        self.width = 1
        self.opacity: dict[int, float] = {}
        self.serial = 0  # bumps with every change (views compare it to redraw)

    # ----- state -----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode in MODES and mode != self.mode:
            self.mode = mode
            self._changed()

    def set_width(self, width: int) -> None:
        width = int(np.clip(width, 1, 5))
        if width != self.width:
            self.width = width
            self._changed()

    def opacity_of(self, value: int) -> float:
        return self.opacity.get(int(value), 1.0)

    def set_opacity(self, value: int, opacity: float) -> None:
        opacity = float(np.clip(opacity, 0.0, 1.0))
        if abs(self.opacity_of(value) - opacity) > 1e-6:
            if opacity >= 1.0:
                self.opacity.pop(int(value), None)
            else:
                self.opacity[int(value)] = opacity
            self._changed()

    def _changed(self) -> None:
        self.serial += 1
        self.changed.emit()

    @property
    def outlined(self) -> bool:
        return self.mode == "outline"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "width": self.width,
                "opacity": {str(v): round(o, 3) for v, o in sorted(self.opacity.items())}}

    def load(self, d) -> None:
        """Back from a project's view state (anything malformed keeps the defaults)."""
        d = d if isinstance(d, dict) else {}
        self.mode = d.get("mode") if d.get("mode") in MODES else "fill"
        try:
            self.width = int(np.clip(int(d.get("width", 1)), 1, 5))
            self.opacity = {int(v): float(np.clip(float(o), 0, 1)) for v, o in dict(d.get("opacity", {})).items()}
        except (TypeError, ValueError):
            self.width, self.opacity = 1, {}
        self._changed()

    # ----- drawing ---------------------------------------------------------------------------
    def lut(self, label_set) -> np.ndarray:
        """uint32 premultiplied ARGB per label value (hidden and unknown values transparent)."""
        top = max((lab.value for lab in label_set), default=0)
        lut = np.zeros(max(int(top), 1) + 1, dtype=np.uint32)
        for lab in label_set:
            if not lab.visible:
                continue
            a = int(round(255 * self.opacity_of(lab.value)))
            r, g, b = (int(c) * a // 255 for c in lab.color)
            lut[lab.value] = (a << 24) | (r << 16) | (g << 8) | b
        return lut

    def image(self, plane: np.ndarray, label_set):
        """The overlay QImage of a label slice, or None when nothing on it shows."""
        if not len(label_set) or not plane.any():
            return None
        if self.outlined:
            plane = label_edges(plane, self.width)
        return render.label_qimage(plane, self.lut(label_set))
