"""Menus and toolbars of the main window, built from its shortcut table and the icon config."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QToolBar

from .resources import icon, window_presets
from .tools import BRUSH_MAX, BRUSH_MIN, TOOLS


def make_action(win, name: str, text: str, slot, icon_name: str | None = None,
                checkable: bool = False, extra_keys: tuple[str, ...] = ()) -> QAction:
    """An action of ``win`` named ``name`` (its key from ``win.shortcuts``), kept in
    ``win.actions_by_name``."""
    act = QAction(text, win)
    if icon_name:
        act.setIcon(icon(icon_name))
    keys = [win.shortcuts[name][0]] if name in win.shortcuts else []
    keys += list(extra_keys)
    if keys:
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.setToolTip(f"{text} ({QKeySequence(keys[0]).toString(QKeySequence.SequenceFormat.NativeText)})")
    act.setCheckable(checkable)
    act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if checkable:
        act.toggled.connect(slot)
    else:
        act.triggered.connect(lambda *_: slot())
    win.addAction(act)
    win.actions_by_name[name] = act
    return act


def build(win) -> None:
    """Create every action, menu and toolbar of ``win`` (a MainWindow)."""
    A = lambda *a, **k: make_action(win, *a, **k)  # noqa: E731
    mb = win.menuBar()
    f = win.menus["file"] = mb.addMenu("&File")
    f.addAction(A("open_file", "Open scan…", win.open_file_dialog, "open_file"))
    f.addAction(A("open_folder", "Open DICOM folder…", win.open_folder_dialog, "open_folder"))
    f.addAction(A("open_project", "Open project…", win.open_project_dialog, "open_project"))
    win.recent_menu = f.addMenu("Open recent")
    f.addSeparator()
    f.addAction(A("save_project", "Save project", win.save_project, "save_project"))
    f.addAction(A("save_project_as", "Save project as…", win.save_project_as))
    f.addSeparator()
    exp = f.addMenu(icon("export"), "Export labels")
    exp.addAction(A("export_nifti", "NIfTI label map (.nii.gz)…", lambda: win.export_dialog("nifti")))
    exp.addAction(A("export_seg", "DICOM SEG (.dcm)…", lambda: win.export_dialog("seg")))
    exp.addAction(A("export_png", "PNG masks (.png)…", lambda: win.export_dialog("png")))
    f.addAction(A("import_labels", "Import labels…", win.import_dialog, "import"))
    f.addSeparator()
    f.addAction(A("quit", "Quit", win.close))

    e = win.menus["edit"] = mb.addMenu("&Edit")
    e.addAction(A("undo", "Undo", win.undo, "undo"))
    e.addAction(A("redo", "Redo", win.redo, "redo", extra_keys=("Ctrl+Y",)))
    e.addSeparator()
    e.addAction(A("accept", "Accept proposal", win.segment.accept, "accept", extra_keys=("Enter",)))
    e.addAction(A("discard", "Discard proposal", win.discard, "discard"))
    e.addAction(A("propagate", "Propagate in 3D", win.propagate, "propagate"))
    e.addSeparator()
    e.addAction(A("new_label", "Add label", win.labels_panel.add_label, "add"))

    t = win.menus["tools"] = mb.addMenu("&Tools")
    group = QActionGroup(win)
    group.setExclusive(True)
    for spec in TOOLS:
        act = A(f"tool_{spec.name}", spec.title, lambda s=spec.name: win.tools.set_tool(s), spec.name)
        act.setCheckable(True)
        act.setStatusTip(spec.tip)
        group.addAction(act)
        t.addAction(act)
    t.addSeparator()
    t.addAction(A("brush_smaller", "Smaller brush", lambda: win.tools.grow(0.8)))
    t.addAction(A("brush_larger", "Larger brush", lambda: win.tools.grow(1.25)))

    v = win.menus["view"] = mb.addMenu("&View")
    for o in ("axial", "coronal", "sagittal"):
        v.addAction(A(f"view_{o}", o.capitalize(), lambda o=o: win.viewer.set_orientation(o)))
    v.addAction(A("layout_grid", "2×2 layout", win.set_grid, "layout_grid", checkable=True))
    v.addSeparator()
    v.addAction(A("fit", "Fit to view", lambda: win.viewer.active.canvas.fit(), "fit"))
    v.addAction(A("zoom_in", "Zoom in", lambda: win.viewer.active.canvas.zoom_by(1.25)))
    v.addAction(A("zoom_out", "Zoom out", lambda: win.viewer.active.canvas.zoom_by(0.8)))
    v.addAction(A("toggle_overlay", "Show labels", win.set_overlay_visible, "visible", checkable=True))
    win.actions_by_name["toggle_overlay"].setChecked(True)
    win.panels_menu = v.addMenu("Panels")

    w = win.menus["window"] = mb.addMenu("&Window")
    for n, (name, c, wd) in enumerate(window_presets(), start=1):
        act = QAction(f"{name}  (L {c:g} / W {wd:g})", win)
        if n <= 9:
            act.setShortcut(QKeySequence(f"Ctrl+{n}"))
        act.triggered.connect(lambda *_, c=c, wd=wd: win.session.set_window(c, wd))
        win.addAction(act)
        win.actions_by_name[f"preset_{n}"] = act
        w.addAction(act)
    w.addAction(A("auto_window", "Automatic (0.5–99.5 percentile)", win.auto_window, "window"))

    h = win.menus["help"] = mb.addMenu("&Help")
    h.addAction(A("shortcuts", "Keyboard shortcuts", win.show_shortcuts, "shortcuts"))
    h.addAction(A("about", "About MedPLIB Studio", win.show_about, "about"))

    _toolbars(win)


def _toolbars(win) -> None:
    a = win.actions_by_name
    tb = QToolBar("Main")
    tb.setObjectName("main_toolbar")
    win.addToolBar(tb)
    for n in ("open_file", "open_folder", "save_project"):
        tb.addAction(a[n])
    tb.addSeparator()
    for n in ("undo", "redo"):
        tb.addAction(a[n])
    tb.addSeparator()
    win.preset_combo = QComboBox()
    win.preset_combo.setToolTip("Window preset (right-drag on the image adjusts)")
    win.preset_combo.addItem("Window…")
    for name, c, wd in window_presets():
        win.preset_combo.addItem(name, (c, wd))
    win.preset_combo.addItem("Automatic", "auto")
    win.preset_combo.activated.connect(win.apply_preset_index)
    tb.addWidget(win.preset_combo)
    tb.addAction(a["layout_grid"])
    tb.addAction(a["fit"])

    tt = QToolBar("Tools")
    tt.setObjectName("tools_toolbar")
    win.addToolBar(tt)
    for spec in TOOLS:
        tt.addAction(a[f"tool_{spec.name}"])
    win.brush_spin = QDoubleSpinBox()
    win.brush_spin.setRange(BRUSH_MIN, BRUSH_MAX)
    win.brush_spin.setDecimals(1)
    win.brush_spin.setSingleStep(0.5)
    win.brush_spin.setSuffix(" mm")
    win.brush_spin.setToolTip("Brush / eraser diameter in millimetres ([ and ] change it)")
    win.brush_spin.setValue(win.tools.brush_size)
    win.brush_spin.valueChanged.connect(win.tools.set_brush_size)
    tt.addWidget(win.brush_spin)
    tt.addSeparator()
    for n in ("accept", "discard", "propagate"):
        tt.addAction(a[n])
