"""`SliceView`: one orientation of the scan — header, `SliceCanvas` and slice slider.

It owns the view's slice index, builds the cached QImages the canvas paints (windowed scan,
label overlay, proposal) and formats the corner text (slice number, position, window).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from medplib_core.analysis.brush import limit_to_range
from medplib_core.annotation import PROPOSAL_COLOR
from medplib_core.engines.prompts import mask_box
from medplib_core.session.proposal import plane_view
from medplib_core.slicing import ORIENTATIONS, available_orientations, n_slices, slice_geometry

from . import render
from .canvas import SliceCanvas
from .document import Document
from .tools import ToolState

_WORLD_AXIS = {"axial": (2, "z"), "coronal": (1, "y"), "sagittal": (0, "x")}


class SliceRenderer:
    """The windowed slices of the session's scan (the core's pixels), cached as QImages (LRU)."""

    def __init__(self, session, max_slices: int = 96):
        self.session = session
        self.max_slices = max_slices
        self._scan: OrderedDict = OrderedDict()

    def clear(self) -> None:
        """Forget the cached windowed slices."""
        self._scan.clear()

    def _entry(self, orientation: str, index: int, window) -> tuple[np.ndarray, object]:
        s = self.session
        window = tuple(window or s.window)
        key = (s.scan_serial, orientation, int(index), float(window[0]), float(window[1]))
        hit = self._scan.get(key)
        if hit is not None:
            self._scan.move_to_end(key)
            return hit
        pixels = s.pixels(orientation, index, window)
        img = render.rgb_qimage(pixels) if pixels.ndim == 3 else render.gray_qimage(pixels)
        self._scan[key] = (pixels, img)
        while len(self._scan) > self.max_slices:
            self._scan.popitem(last=False)
        return pixels, img

    def pixels(self, orientation: str, index: int, window=None) -> np.ndarray:
        """uint8 display pixels of a slice (what engines are given); the session's window by default."""
        return self._entry(orientation, index, window)[0]

    def scan_image(self, orientation: str, index: int, window=None):
        return self._entry(orientation, index, window)[1]


class SliceView(QWidget):
    """A header (orientation), a canvas and a slider for one view of the document."""

    activated = Signal(object)  # self: the user works in this view (clicked, scrolled, focused)
    index_changed = Signal(str, int)
    orientation_changed = Signal(str)

    def __init__(self, doc: Document, tools: ToolState, orientation: str = "axial",
                 renderer: SliceRenderer | None = None, parent: QWidget | None = None,
                 indices: dict[str, int] | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.orientation = orientation
        self.index = 0
        # the slice shown per orientation; views of one viewer share it, so a slice chosen in
        # one layout (2×2) is the one another view shows in that orientation
        self.indices: dict[str, int] = {} if indices is None else indices
        self.renderer = renderer or SliceRenderer(self.session)
        self._label_key = None
        self._prop_key = None
        self._stale: dict[str, bool] = {}  # what a refresh skipped while the layout hid this view
        self.overlay_visible = True
        self.label_style = None  # a `label_display.LabelStyle` (fill/outline, opacity per label), if set

        self.combo = QComboBox()
        self.combo.addItems([o.capitalize() for o in ORIENTATIONS])
        self.combo.setToolTip("Orientation of this view")
        self.title = QLabel("")
        self.title.setStyleSheet("color: palette(mid);")
        head = QHBoxLayout()
        head.setContentsMargins(4, 2, 4, 2)
        head.addWidget(self.combo)
        head.addWidget(self.title, 1)
        self.canvas = SliceCanvas(tools)
        self.canvas.stroke_limit = self.in_value_range  # the preview shows what the stroke will paint
        self.slider = QSlider(Qt.Orientation.Vertical)
        self.slider.setInvertedAppearance(True)
        self.slider.setToolTip("Slice (wheel, arrow and Page keys also scroll)")
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.canvas, 1)
        body.addWidget(self.slider)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(head)
        lay.addLayout(body, 1)

        self.combo.currentIndexChanged.connect(lambda i: self.set_orientation(ORIENTATIONS[i]))
        self.slider.valueChanged.connect(self._user_index)
        self.canvas.slice_step.connect(lambda n: self._user_index(self.index + n))
        self.canvas.focused.connect(lambda: self.activated.emit(self))
        self.canvas.window_drag.connect(self._window_drag)
        doc.volume_changed.connect(self._on_volume)
        doc.window_changed.connect(lambda *_: self.refresh(labels=False, proposal=False))
        doc.voxels_changed.connect(lambda: self.refresh(scan=False, proposal=False))
        doc.labels_changed.connect(lambda: self.refresh(scan=False, proposal=False))
        doc.proposal_changed.connect(lambda: self.refresh(scan=False, labels=False))
        doc.active_label_changed.connect(self._on_active_label)

    # ----- state -----------------------------------------------------------------------------
    def n_slices(self) -> int:
        return n_slices(self.session.volume, self.orientation) if self.session.volume is not None else 0

    def geometry(self):
        return slice_geometry(self.session.volume, self.orientation, self.index)

    def _on_volume(self) -> None:
        vol = self.session.volume
        avail = available_orientations(vol)
        model = self.combo.model()
        for i, o in enumerate(ORIENTATIONS):
            model.item(i).setEnabled(o in avail)
        for o in avail:  # the middle slice, unless a view sharing these indices chose already
            n = n_slices(vol, o)
            if not 0 <= self.indices.get(o, -1) < n:
                self.indices[o] = n // 2
        if self.orientation not in avail:
            self.orientation = "axial"
        self._label_key = self._prop_key = None
        self._apply_orientation()
        self.canvas.fit()

    def in_value_range(self, mask: np.ndarray) -> np.ndarray:
        """The part of a stroke mask on this slice that the tool options' value range lets the
        brush and eraser change (all of it when no range is on, or on colour images)."""
        value_range, vol = self.canvas.tools.value_range, self.session.volume
        if value_range is None or vol is None or vol.is_colour:
            return mask
        return limit_to_range(mask, plane_view(vol, self.orientation, self.index)(vol.array), value_range)

    def set_orientation(self, orientation: str) -> None:
        if orientation == self.orientation or self.session.volume is None:
            return
        if orientation not in available_orientations(self.session.volume):
            self.combo.setCurrentIndex(ORIENTATIONS.index(self.orientation))
            return
        self.indices[self.orientation] = self.index
        self.orientation = orientation
        self._apply_orientation()
        self.canvas.fit()
        self.activated.emit(self)

    def _apply_orientation(self) -> None:
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(ORIENTATIONS.index(self.orientation))
        self.combo.blockSignals(False)
        n = self.n_slices()
        self.index = int(np.clip(self.indices.get(self.orientation, n // 2), 0, max(n - 1, 0)))
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        self.slider.setValue(self.index)
        self.slider.setPageStep(10)
        self.slider.blockSignals(False)
        self.slider.setVisible(n > 1)
        self.refresh()
        self.orientation_changed.emit(self.orientation)

    def _user_index(self, index: int) -> None:
        """A slice chosen by the user in this view (wheel, keys, slider): the view is active."""
        self.set_index(index)
        self.activated.emit(self)

    def set_index(self, index: int) -> None:
        if self.session.volume is None:
            return
        index = int(np.clip(index, 0, max(self.n_slices() - 1, 0)))
        if index == self.index:
            return
        self.index = index
        self.indices[self.orientation] = index
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.refresh()
        self.index_changed.emit(self.orientation, index)

    def _window_drag(self, dx: float, dy: float) -> None:
        c, w = self.session.window
        sens = max(w, 1e-3) / 250.0
        self.session.set_window(c + dy * sens, max(w + dx * sens, 1e-3))

    def _on_active_label(self, value: int) -> None:
        lab = self.session.labels.get(value)
        if lab is not None:
            self.canvas.stroke_color = QColor(*lab.color)

    # ----- rendering -------------------------------------------------------------------------
    def refresh(self, scan: bool = True, labels: bool = True, proposal: bool = True) -> None:
        """Rebuild what changed and schedule a repaint; a view the layout hides catches up when shown.
        When only the proposal changed, only where it and the texts were or are now is repainted."""
        vol = self.session.volume
        if vol is None:
            return
        if self.isHidden():
            for name, flag in (("scan", scan), ("labels", labels), ("proposal", proposal)):
                self._stale[name] = self._stale.get(name, False) or flag
            return
        self._stale = {}
        geom = self.geometry()
        cv = self.canvas
        same_slice = (cv.shape, cv.spacing) == (tuple(geom.shape), tuple(geom.pixel_spacing))
        before = cv.proposal_region() if same_slice and not (scan or labels) else None
        cv.set_slice_shape(geom.shape, geom.pixel_spacing)
        if scan:
            cv.scan_image = self.renderer.scan_image(geom.orientation, geom.index)
        if labels or scan:
            style = self.label_style
            key = (id(self.session.labelmap), geom.orientation, geom.index, self.session.label_revision,
                   self.overlay_visible, style.serial if style is not None else None)
            if key != self._label_key:
                self._label_key = key
                cv.label_image = None
                cv.labels_outlined = style is not None and style.outlined
                if self.overlay_visible and style is not None:
                    cv.label_image = style.image(geom.take(self.session.labelmap.array), self.session.labels)
                elif self.overlay_visible and len(self.session.labels):
                    lut = render.label_lut(self.session.labels, max(lab.value for lab in self.session.labels))
                    cv.label_image = render.label_qimage(geom.take(self.session.labelmap.array), lut)
        if proposal or scan:
            self._refresh_proposal(geom)
        letters = cv.letters
        cv.letters = geom.edge_letters
        cv.corner_text = self._corner_text(geom)
        cv.show_hint = not any(self.session.counts.values()) and self.session.proposal is None
        if before is not None and letters == cv.letters:
            cv.update(before | cv.proposal_region())
        else:
            cv.update()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self._stale:
            self.refresh(**self._stale)
        super().showEvent(event)

    def _refresh_proposal(self, geom) -> None:
        p = self.session.proposal
        key = (id(p), geom.orientation, geom.index)
        if key == self._prop_key:
            return
        self._prop_key = key
        cv = self.canvas
        cv.proposal_image, cv.proposal_outline, cv.proposal_prompt = None, None, None
        if p is None:
            return
        mask = p.mask_on(self.session.volume, geom.orientation, geom.index)
        box = None if mask is None else mask_box(mask)
        if box is not None:  # hatched, with a dashed outline: no label looks like this
            period = max(4, int(round(max(mask.shape) / 80)))
            c0, r0 = int(box[0]), int(box[1])  # only the mask's own box is built and drawn
            crop = mask[r0:int(box[3]) + 1, c0:int(box[2]) + 1]
            cv.proposal_image = render.hatch_qimage(crop, PROPOSAL_COLOR, period=period, width=max(1, period // 3),
                                                    phase=r0 + c0)
            cv.proposal_at = (c0, r0)
            cv.proposal_outline = render.mask_outline(crop, at=(c0, r0))
        if not p.is_3d and p.record.orientation == geom.orientation and p.record.index == geom.index:
            cv.proposal_prompt = p.record.prompt

    def _corner_text(self, geom) -> list[str]:
        vol = self.session.volume
        n = self.n_slices()
        world = geom.to_world((geom.shape[0] - 1) / 2, (geom.shape[1] - 1) / 2)
        axis, name = _WORLD_AXIS[geom.orientation]
        photo = vol.source is not None and vol.source.kind == "image"
        tl = f"{'Image' if photo else geom.orientation.capitalize()}  {geom.index + 1} / {n}"
        if not vol.is_2d:
            tl += f"\n{name} = {world[axis]:.1f} mm"
        c, w = self.session.window
        tr = "" if vol.is_colour else f"W {w:.0f}  L {c:.0f}"
        if self.session.proposal is not None:  # second line: clear of the centred orientation letter
            tr += "\nEnter: accept · Esc: discard"
        bl = f"{vol.modality}  {geom.shape[1]}×{geom.shape[0]}  {geom.pixel_spacing[1]:.2f}×{geom.pixel_spacing[0]:.2f} mm"
        return [tl, tr, bl, ""]
