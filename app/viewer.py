"""`ViewerArea`: one switchable view or a 2×2 layout (axial, coronal, sagittal + scan info)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QWidget

from medplib_core.slicing import available_orientations

from .document import Document
from .slice_view import SliceRenderer, SliceView
from .tools import ToolState


class ViewerArea(QWidget):
    """Holds the slice views; knows which one is active (the one the user works in: clicked,
    drawn on, scrolled or given the keyboard focus) and tells the session which slice that is
    (`AnnotationSession.set_focus`: chat questions are about it)."""

    active_changed = Signal(object)  # SliceView
    cursor_info = Signal(object)  # dict or None

    def __init__(self, doc: Document, tools: ToolState, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.renderer = SliceRenderer(self.session)  # one slice cache for all views
        self.positions: dict[str, int] = {}  # slice per orientation, shared by the views
        doc.volume_changed.connect(self.positions.clear)  # before the views (connection order)
        self.views = [SliceView(doc, tools, o, self.renderer, indices=self.positions)
                      for o in ("axial", "coronal", "sagittal")]
        self.info = QLabel()
        self.info.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.info.setWordWrap(True)
        self.info.setFrameShape(QFrame.Shape.StyledPanel)
        self.info.setMargin(10)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # the info text (long paths) must not widen its column: the 2×2 cells are equal
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.fourth: QWidget = self.info  # the 2×2 layout's fourth cell (`set_fourth_pane`)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.layout_mode = "single"
        self.active = self.views[0]
        for v in self.views:
            v.activated.connect(self._set_active)
            v.index_changed.connect(lambda *_, v=v: self._focus_if_active(v))
            v.orientation_changed.connect(lambda *_, v=v: self._focus_if_active(v))
            v.canvas.cursor_moved.connect(lambda rc, v=v: self._cursor(v, rc))
            v.index_changed.connect(lambda *_, v=v: self._refresh_cursor(v))  # scrolled under the pointer
            v.canvas.navigate_clicked.connect(lambda r, c, v=v: self.go_to(v, r, c))
        doc.volume_changed.connect(self._on_volume)
        doc.view_state_loaded.connect(self.restore_state)
        self._pointer = None  # (view, (row, col)) under the pointer, for a fresh readout
        doc.voxels_changed.connect(self._refresh_cursor)  # the label under the pointer may change
        doc.labels_changed.connect(self._refresh_cursor)
        self.set_layout("single")

    # ----- layout ------------------------------------------------------------------------------
    def set_layout(self, mode: str) -> None:
        """"single" shows the active view; "grid" shows axial, coronal, sagittal and scan info."""
        if self.session.volume is not None and self.session.volume.is_2d:
            mode = "single"
        self.layout_mode = mode
        for w in [*self.views, self.fourth]:
            self.grid.removeWidget(w)
            w.hide()
        for n in (0, 1):  # equal cells in 2×2; one cell alone otherwise
            self.grid.setColumnStretch(n, 1 if mode == "grid" or n == 0 else 0)
            self.grid.setRowStretch(n, 1 if mode == "grid" or n == 0 else 0)
        if mode == "grid":
            for v, o in zip(self.views, ("axial", "coronal", "sagittal")):
                if self.session.volume is not None:
                    v.set_orientation(o)
            for w, (r, c) in zip([*self.views, self.fourth], ((0, 0), (0, 1), (1, 0), (1, 1))):
                self.grid.addWidget(w, r, c)
                w.show()
        else:
            self.grid.addWidget(self.active, 0, 0)
            self.active.show()
        self.active.canvas.setFocus()
        self._focus_if_active(self.active)

    def set_fourth_pane(self, widget: QWidget) -> None:
        """Put ``widget`` in the 2×2 layout's fourth cell (the scan info is there by default)."""
        self.grid.removeWidget(self.fourth)
        self.fourth.hide()
        self.fourth = widget
        widget.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)  # equal cells
        widget.setParent(self)  # now, not when first shown: a native child (the 3D pane's GL
        widget.hide()           # window) is then set up before the window is shown
        self.set_layout(self.layout_mode)

    def set_orientation(self, orientation: str) -> None:
        """Show ``orientation`` in the active view (single layout) or activate its view (grid)."""
        if self.session.volume is None or orientation not in available_orientations(self.session.volume):
            return
        if self.layout_mode == "grid":
            for v in self.views:
                if v.orientation == orientation:
                    self._set_active(v)
                    return
        self.active.set_orientation(orientation)

    def _set_active(self, view: SliceView) -> None:
        if view is not self.active:
            self.active = view
            self.active_changed.emit(view)
        self._focus_if_active(view)

    def _focus_if_active(self, view: SliceView) -> None:
        if view is self.active and self.session.volume is not None:
            self.session.set_focus(view.orientation, view.index)

    def state(self) -> dict:
        """Layout, active view and each view's orientation, slice and zoom (saved in projects)."""
        return {"layout": self.layout_mode, "active": self.views.index(self.active),
                "views": [{"orientation": v.orientation, "index": v.index, "zoom": v.canvas.zoom,
                           "pan": [v.canvas.pan.x(), v.canvas.pan.y()]} for v in self.views]}

    def restore_state(self, state: dict) -> None:
        if not state or self.session.volume is None:
            return
        for v, s in zip(self.views, state.get("views", [])):
            try:
                v.set_orientation(s["orientation"])
                v.set_index(int(s["index"]))
                v.canvas.zoom = float(s.get("zoom", 1.0))
                v.canvas.pan = QPointF(*s.get("pan", (0.0, 0.0)))
            except (KeyError, TypeError, ValueError):
                continue
        active = int(state.get("active", 0))
        if 0 <= active < len(self.views):
            self._set_active(self.views[active])
        self.set_layout(state.get("layout", "single"))

    def go_to(self, source: SliceView, row: float, col: float) -> None:
        """Show the clicked voxel in the other views (navigate tool click)."""
        i, j, k = source.geometry().to_voxel(int(row), int(col))  # the pixel clicked covers [col, col+1)
        for v in self.views:
            if v is not source and v.isVisible():
                v.set_index(v.geometry().slice_index_of(i, j, k))

    # ----- readout ---------------------------------------------------------------------------
    def _on_volume(self) -> None:
        vol = self.session.volume
        self._pointer = None
        self.cursor_info.emit(None)  # nothing of the previous scan stays in the readout
        if vol.is_2d and self.layout_mode == "grid":
            self.set_layout("single")
        self._focus_if_active(self.active)
        src = vol.source
        lines = [
            f"<b>{(src.series_description if src and src.series_description else '') or 'Scan'}</b>",
            f"Modality: {vol.modality}" + (f" ({vol.units})" if vol.units else ""),
            f"Size (i×j×k): {' × '.join(str(n) for n in vol.size_ijk)}",
            f"Spacing: {' × '.join(f'{s:.3g}' for s in vol.spacing)} mm",
            f"Orientation: {vol.orientation_code()}",
            f"Origin (LPS): {', '.join(f'{o:.1f}' for o in vol.origin)} mm",
        ]
        if src is not None:
            lines.append(f"Source: {src.kind}, {src.path}")
            lines += [f"Note: {n}" for n in src.notes[:4]]
        self.info.setText("<br>".join(lines))

    def _refresh_cursor(self, view: SliceView | None = None) -> None:
        if self._pointer is not None and (view is None or self._pointer[0] is view):
            self._cursor(*self._pointer)

    def _cursor(self, view: SliceView, rc) -> None:
        self._pointer = (view, rc) if rc is not None else None
        if rc is None or self.session.volume is None:
            self.cursor_info.emit(None)
            return
        vol = self.session.volume
        geom = view.geometry()
        row, col = int(rc[0]), int(rc[1])
        if not (0 <= row < geom.shape[0] and 0 <= col < geom.shape[1]):  # the view changed under it
            self._pointer = None
            self.cursor_info.emit(None)
            return
        i, j, k = geom.to_voxel(row, col)
        world = geom.to_world(row, col)
        value = vol.array[k, j, i]
        label = int(self.session.labelmap.array[k, j, i]) if self.session.labelmap is not None else 0
        photo = vol.source is not None and vol.source.kind == "image"  # no patient geometry
        self.cursor_info.emit({"ijk": (i, j, k), "world": None if photo else tuple(float(w) for w in world),
                               "value": value, "units": vol.units, "label": label,
                               "orientation": geom.orientation})
