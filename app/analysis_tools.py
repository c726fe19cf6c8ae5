"""The tools beside the model, installed into the main window through its extension points:
linked views (crosshair), ruler and ROI measurements, the Statistics panel, the 3D pane of the
2×2 layout, label display (fill / outline, opacity per label), coded terminology, fill between
slices, RT Structure Set export and the brush options. Every computation is in
`medplib_core.analysis` / the session; this module only wires widgets to it.

Keys (in Help ▸ Keyboard shortcuts): M ruler, R ROI (tools), C crosshair, J jump to the active
label, Delete deletes the selected measurement, Ctrl+Shift+F fills between slices.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QMenu, QTabWidget

from medplib_core.analysis.interpolate import fill_between_slices
from medplib_core.analysis.stats import label_statistics
from medplib_core.errors import MedplibError

from .crosshair import Crosshair
from .dialogs import error_from_exception
from .label_controls import LabelControls
from .label_display import LabelStyle
from .measure_tool import MeasureTool
from .stats_panel import StatsPanel
from .surface_view import SurfaceView
from .terminology_dialog import TerminologyDialog
from .tool_options import ToolOptions
from .workers import TaskRunner

SHORTCUTS = {
    "crosshair": ("C", "Show / hide the crosshair of the linked views (Shift+move or a navigate click sets it)"),
    "jump_to_label": ("J", "Jump to the active label's centre of mass"),
    "delete_measurement": ("Del", "Delete the selected ruler / ROI"),
    "fill_between_slices": ("Ctrl+Shift+F", "Fill between slices: the active label's drawn slices in the "
                                            "active view's direction → a 3D proposal"),
}


def install_analysis(window) -> "AnalysisTools":
    """Install the analysis tools into ``window`` (once)."""
    return window.extension("analysis") or window.add_extension("analysis", AnalysisTools(window))


class AnalysisTools(QObject):
    """Owns the analysis widgets of one window and connects them to its session."""

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.session = win.session
        viewer = win.viewer
        self.runner = TaskRunner(1, self, "analysis")
        self.crosshair = Crosshair(viewer, self)
        self.measure = MeasureTool(viewer, win.tools, self)
        self.style = LabelStyle(self)
        for v in viewer.views:
            v.label_style = self.style
        self.style.changed.connect(lambda: [v.refresh(scan=False, proposal=False) for v in viewer.views])
        self.controls = LabelControls(win.doc, self.style)
        win.labels_panel.add_row(self.controls)
        self.stats = StatsPanel(win.doc, self.measure)
        self.stats_dock = win.add_panel("Statistics", self.stats, "stats_dock",
                                        tab_with="chat_dock" if "chat_dock" in win.docks else None)
        self.surface = SurfaceView(win.doc)
        self.fourth = QTabWidget()
        self.fourth.setTabPosition(QTabWidget.TabPosition.South)
        self.fourth.setDocumentMode(True)
        self.fourth.addTab(self.surface, "3D")
        self.fourth.addTab(viewer.info, "Scan info")
        viewer.set_fourth_pane(self.fourth)
        self.options = ToolOptions(win)
        self._actions()
        self._connect()

    # ----- menus and keys --------------------------------------------------------------------
    def _actions(self) -> None:
        w = self.win
        w.add_shortcuts(SHORTCUTS)
        act = w.add_action("crosshair", "Crosshair (linked views)", lambda: None, "crosshair", menu="view",
                           after="layout_grid")
        act.setCheckable(True)
        act.toggled.connect(self.crosshair.set_enabled)
        w.add_action("jump_to_label", "Jump to the active label", self.jump_to_active, "jump", menu="edit",
                     after="new_label")
        w.add_action("fill_between_slices", "Fill between slices", self.fill_between_slices, "fill_slices",
                     menu="edit", after="propagate")
        w.add_action("delete_measurement", "Delete the selected measurement", self.delete_measurement,
                     menu="edit", after="fill_between_slices")
        seg = w.actions_by_name["export_seg"]
        export_menu = next((m for m in w.menus["file"].findChildren(QMenu) if seg in m.actions()), None)
        w.add_action("export_rtstruct", "RT Structure Set (.dcm)…", self.export_rtstruct_dialog,
                     menu=export_menu, after="export_seg")
        w.actions_by_name["export_rtstruct"].setEnabled(False)
        w.actions_by_name["delete_measurement"].setEnabled(False)

    def _connect(self) -> None:
        w, doc = self.win, self.win.doc
        self.controls.jump_requested.connect(self.jump_to_label)
        self.controls.code_requested.connect(self.choose_code)
        self.stats.jump_requested.connect(self.jump_to_world)
        self.stats.measurement_requested.connect(self.show_measurement)
        self.stats.axes_requested.connect(self.draw_axes)
        self.measure.selection_changed.connect(
            lambda m: w.actions_by_name["delete_measurement"].setEnabled(m is not None))
        self.options.message.connect(lambda m: w.status.showMessage(m, 6000))
        doc.volume_changed.connect(self._on_volume)
        doc.view_state_loaded.connect(self._restore)
        provider = self.session.view_state_provider
        self.session.view_state_provider = lambda: {**(provider() if provider else {}), **self.view_state()}
        w.on_close(self.shutdown)
        QTimer.singleShot(1500, self._warm_terminology)

    def _warm_terminology(self) -> None:
        """The code list's first use imports pydicom's dictionaries (~1 s): do it off the GUI thread."""
        from medplib_core.annotation import terminology

        self.runner.submit(terminology.catalogue, name="terminology")

    def _on_volume(self) -> None:
        vol = self.session.volume
        self.win.actions_by_name["export_rtstruct"].setEnabled(bool(vol.source and vol.source.kind == "dicom"))
        self.win.actions_by_name["fill_between_slices"].setEnabled(not vol.is_2d)

    # ----- view state (saved in the project) -------------------------------------------------
    def view_state(self) -> dict:
        c = self.crosshair.cursor
        return {"label_display": self.style.to_dict(), "crosshair": {
            "shown": self.crosshair.enabled, "world": [float(x) for x in c.world] if c is not None else None}}

    def _restore(self, state: dict) -> None:
        self.style.load(state.get("label_display"))
        cross = state.get("crosshair") or {}
        world = cross.get("world")
        if isinstance(world, list) and len(world) == 3:
            try:
                self.crosshair.set_world([float(x) for x in world])
            except (TypeError, ValueError):
                pass
        self.win.actions_by_name["crosshair"].setChecked(bool(cross.get("shown")))

    # ----- jump to label ---------------------------------------------------------------------
    def jump_to_active(self) -> None:
        v = self.session.active_value
        if v and v in self.session.labels:
            self.jump_to_label(v)

    def jump_to_label(self, value: int) -> None:
        """Put the cursor on the label's centre of mass (computed on a worker)."""
        s = self.session
        if s.volume is None or not s.counts.get(value):
            self.win.status.showMessage(f"{s.labels[value].name if value in s.labels else 'The label'} has no voxels.", 5000)
            return
        vol, src, lock, serial = s.volume, s.labelmap.array, s.lock, s.scan_serial

        def work():
            with lock:
                labels = src.copy()
            return label_statistics(vol, labels, values=[value], diameters=False)

        def done(rows):
            if rows and serial == s.scan_serial:
                self.jump_to_world(rows[0].centroid_world)
                self.win.status.showMessage(f"{s.labels[value].name}: centre of mass", 4000)

        self.runner.submit(work, name="jump to label", on_done=done,
                           on_error=lambda exc: error_from_exception(self.win, "Cannot find the label", exc))

    def jump_to_world(self, world) -> None:
        self.crosshair.set_world(np.asarray(world, dtype=float))
        self.win.viewer.active.canvas.update()

    # ----- measurements ----------------------------------------------------------------------
    def show_measurement(self, item) -> None:
        viewer = self.win.viewer
        viewer.set_orientation(item.orientation)
        view = next((v for v in viewer.views if v.orientation == item.orientation and v.isVisible()), viewer.active)
        view.set_index(item.index)
        self.measure.select(item)

    def draw_axes(self, stats) -> None:
        """A label's RECIST long and short axes become two rulers (one undo step) on their slice, shown."""
        from medplib_core.analysis.diameters import axes_as_rulers

        rulers = axes_as_rulers(self.session.volume, stats.diameters, stats.name)
        self.session.measurements.add_all(list(rulers), f"RECIST axes of {stats.name}")
        self.show_measurement(rulers[0])
        self.win.status.showMessage(f"{stats.name}: long and short axes drawn as rulers (Ctrl+Z removes them)", 6000)

    def delete_measurement(self) -> None:
        if not self.measure.delete_selected():
            self.win.status.showMessage("No measurement selected: click one with the ruler or ROI tool.", 5000)

    # ----- fill between slices ---------------------------------------------------------------
    def fill_between_slices(self) -> None:
        s, view = self.session, self.win.viewer.active
        value = s.active_value
        if s.volume is None or not value or not s.counts.get(value):
            self.win.status.showMessage("Fill between slices: draw the active label on a few slices first.", 6000)
            return
        vol, src, lock, serial = s.volume, s.labelmap.array, s.lock, s.scan_serial
        orientation, name = view.orientation, s.labels[value].name

        def work():
            with lock:
                mask = src == value
            return fill_between_slices(mask, vol, orientation)

        def done(fill):
            if serial != s.scan_serial:
                return
            if s.propose_fill(fill, orientation, value) is None:
                self.win.status.showMessage(f"Fill between slices: {name}'s drawn slices leave no gap to fill.", 6000)
            else:
                self.win.status.showMessage(f"Filled {len(fill.filled) - len(fill.drawn)} {orientation} slices "
                                            f"between {len(fill.drawn)} drawn ones of {name}: Enter accepts, "
                                            "Esc discards.", 10000)

        def failed(exc):
            if isinstance(exc, MedplibError):
                self.win.status.showMessage(f"Fill between slices: {exc}.", 8000)
            else:
                error_from_exception(self.win, "Fill between slices failed", exc)

        self.win.status.showMessage(f"Filling between the {orientation} slices of {name}…", 4000)
        self.runner.submit(work, name="fill between slices", on_done=done, on_error=failed)

    # ----- terminology and RTSTRUCT ----------------------------------------------------------
    def choose_code(self, value: int) -> None:
        self.code_dialog = TerminologyDialog(self.session, value, self.win)
        self.code_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.code_dialog.open()

    def export_rtstruct_dialog(self) -> None:
        """File ▸ Export ▸ RT Structure Set: the window's export dialog (a name that collides with
        nothing, the last export folder)."""
        if self.session.volume is None:
            return
        self.win.export_dialog("rtstruct")
        self.rtstruct_dialog = self.win.file_dialog

    # ----- closing ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.stats.job.cancel()
        self.surface.shutdown()
        self.stats.job.wait(30000)
        self.runner.wait(30000)
