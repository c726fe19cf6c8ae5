"""The app's shortcut table (one place for every key of the window) and the shortcuts dialog.

Each window starts from a copy of `SHORTCUTS`; extensions add theirs with
`MainWindow.add_shortcuts`, so the table the dialog lists is the window's own."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget, QAbstractItemView)

from .tools import TOOLS

# action id -> (key sequence, description); actions created by the main window use these keys.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "open_file": ("Ctrl+O", "Open a scan file"),
    "open_folder": ("Ctrl+Shift+O", "Open a DICOM folder"),
    "open_project": ("Ctrl+Alt+O", "Open a project"),
    "save_project": ("Ctrl+S", "Save the project"),
    "save_project_as": ("Ctrl+Shift+S", "Save the project as…"),
    "export_nifti": ("Ctrl+E", "Export labels as NIfTI"),
    "import_labels": ("Ctrl+I", "Import labels"),
    "quit": ("Ctrl+Q", "Quit"),
    "undo": ("Ctrl+Z", "Undo"),
    "redo": ("Ctrl+Shift+Z", "Redo (also Ctrl+Y)"),
    "accept": ("Return", "Accept the proposal into the active label (also Enter)"),
    "discard": ("Esc", "Discard the proposal / cancel the running prompt"),
    "propagate": ("Ctrl+P", "Propagate the proposal or active label in 3D"),
    "brush_smaller": ("[", "Smaller brush / eraser"),
    "brush_larger": ("]", "Larger brush / eraser"),
    "new_label": ("Ctrl+N", "Add a label"),
    "toggle_overlay": ("O", "Show / hide the label overlay"),
    "auto_window": ("Ctrl+0", "Automatic window (percentiles)"),
    "view_axial": ("Alt+1", "Axial view"),
    "view_coronal": ("Alt+2", "Coronal view"),
    "view_sagittal": ("Alt+3", "Sagittal view"),
    "layout_grid": ("Alt+4", "Toggle the 2×2 layout"),
    "fit": ("F", "Fit the image to the view"),
    "zoom_in": ("Ctrl+=", "Zoom in (also Ctrl+wheel)"),
    "zoom_out": ("Ctrl+-", "Zoom out"),
    "shortcuts": ("F1", "This list"),
}
for _t in TOOLS:
    SHORTCUTS[f"tool_{_t.name}"] = (_t.key, f"{_t.title} tool: {_t.tip}")

MOUSE_AND_KEYS = [
    ("Wheel", "Next / previous slice"),
    ("Up / Down, Left / Right", "Previous / next slice"),
    ("Page Up / Page Down", "10 slices back / forward"),
    ("Home / End", "First / last slice"),
    ("Right-drag", "Window: horizontal = width, vertical = level"),
    ("Middle-drag", "Pan"),
    ("Ctrl+1 … Ctrl+5", "Window presets (CT soft tissue, lung, bone, brain, liver)"),
]


class ShortcutsDialog(QDialog):
    """Every key and mouse gesture in one table (``shortcuts``: a window's table)."""

    def __init__(self, shortcuts: dict[str, tuple[str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        rows = [(k, d) for k, d in shortcuts.values()] + MOUSE_AND_KEYS
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Key", "Does"])
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().setVisible(False)
        for r, (k, d) in enumerate(rows):
            text = QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) if "…" not in k and "/" not in k and "-drag" not in k and k != "Wheel" else k
            table.setItem(r, 0, QTableWidgetItem(text or k))
            table.setItem(r, 1, QTableWidgetItem(d))
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        table.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        lay.addWidget(buttons)
        self.table = table
        self.resize(620, 640)
