"""Choose a label's coded meaning (category + type + laterality) from the core's searchable list
(`medplib_core.annotation.terminology`: CID 7150 categories with the CID 7191-7194 types, the
usual organs and findings first). The codes go into `Label.terminology` as one undo step; DICOM
SEG and RTSTRUCT exports carry them, the NIfTI sidecar keeps them."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QVBoxLayout, QWidget)

from medplib_core.annotation import terminology as terms

DEFAULT_NAME = re.compile(r"^label \d+$")
SIDES = (("No laterality", None), ("Left", "left"), ("Right", "right"))


class TerminologyDialog(QDialog):
    """A search box over the coded terms, the result list and a laterality choice."""

    def __init__(self, session, value: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.value = int(value)
        lab = session.labels[value]
        self.setWindowTitle(f"Code for {lab.name}")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search organs, tissues, findings (e.g. liver, left kidney, nodule)…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.side = QComboBox()
        for text, _ in SIDES:
            self.side.addItem(text)
        self.rename = QCheckBox("Name the label after the term")
        self.rename.setChecked(bool(DEFAULT_NAME.match(lab.name)))
        self.current = QLabel()
        self.current.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.clear_button = buttons.addButton("Remove the code", QDialogButtonBox.ButtonRole.ResetRole)
        self.clear_button.setEnabled(lab.terminology is not None)
        buttons.accepted.connect(self.apply)
        buttons.rejected.connect(self.reject)
        self.clear_button.clicked.connect(self.clear_code)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        row = QHBoxLayout()
        row.addWidget(self.side)
        row.addWidget(self.rename, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.current)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        lay.addWidget(buttons)
        self.resize(560, 520)
        self.search.textChanged.connect(self.refresh)
        self.list.itemDoubleClicked.connect(lambda _: self.apply())
        self.list.currentItemChanged.connect(lambda *_: self.ok_button.setEnabled(self.list.currentItem() is not None))
        # start from the label's codes, else a suggestion from its name
        now = terms.Term.from_dict(lab.terminology) if lab.terminology else None
        guess = now or terms.suggest(lab.name)
        self.current.setText(f"Now: <b>{now.display}</b> ({now.type.scheme_designator} {now.type.value})"
                             if now else "Not coded yet.")
        if guess is not None and guess.modifier is not None:
            self.side.setCurrentIndex(1 if guess.modifier.value == terms.LATERALITY["left"].value else 2)
        self.refresh("" if guess is None else guess.type.meaning, select=guess)
        if guess is not None:
            self.search.blockSignals(True)
            self.search.setText(guess.type.meaning)
            self.search.blockSignals(False)
        self.search.setFocus()

    def refresh(self, text: str, select=None) -> None:
        self.list.clear()
        for t in terms.search(text, limit=80):
            it = QListWidgetItem(f"{t.type.meaning}  —  {t.category.meaning}   ({t.type.scheme_designator} {t.type.value})")
            it.setData(Qt.ItemDataRole.UserRole, t)
            self.list.addItem(it)
            if select is not None and (t.category, t.type) == (select.category, select.type):
                self.list.setCurrentItem(it)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self.ok_button.setEnabled(self.list.currentItem() is not None)

    def chosen(self) -> terms.Term | None:
        it = self.list.currentItem()
        if it is None:
            return None
        side = SIDES[self.side.currentIndex()][1]
        return it.data(Qt.ItemDataRole.UserRole).with_modifier(terms.LATERALITY[side] if side else None)

    def apply(self) -> None:
        term = self.chosen()
        if term is None:
            return
        changes = {"terminology": term.to_dict()}
        if self.rename.isChecked():
            side = f"{term.modifier.meaning.lower()} " if term.modifier is not None else ""
            changes["name"] = f"{side}{term.type.meaning.lower()}"
        self.session.update_label(self.value, "set label code", **changes)
        self.accept()

    def clear_code(self) -> None:
        self.session.update_label(self.value, "remove label code", terminology=None)
        self.accept()
