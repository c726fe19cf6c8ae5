"""The chat dock's widgets: question box, transcript view and the panel's layout.

`ChatPanelUI` only builds and lays out the child widgets; `ChatPanel` (panel.py) gives them
behaviour. `TranscriptView` renders a conversation as rich text and appends streamed answer
text in place, so a long answer costs one insertion per token, not a re-render.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor, QTextTable
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
                               QPushButton, QSizePolicy, QTextBrowser, QToolButton, QVBoxLayout,
                               QWidget)

_SEND_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class QuestionEdit(QPlainTextEdit):
    """The question box: Enter sends, Shift+Enter breaks the line, Esc stops an answer.

    These keys are claimed before the window's shortcuts (Enter accepts a proposal, Esc
    discards it) while the box has the focus."""

    submitted = Signal()
    escape = Signal()

    def event(self, ev) -> bool:  # noqa: D102
        if ev.type() == QEvent.Type.ShortcutOverride and isinstance(ev, QKeyEvent) and \
                ev.key() in (*_SEND_KEYS, Qt.Key.Key_Escape):
            ev.accept()
            return True
        return super().event(ev)

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        if ev.key() in _SEND_KEYS and not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
        elif ev.key() == Qt.Key.Key_Escape:
            self.escape.emit()
        else:
            super().keyPressEvent(ev)


class TranscriptView(QTextBrowser):
    """Read-only transcript; links (``mask:ID``) are reported, never followed."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setObjectName("chat_transcript")
        self.setStyleSheet("QTextBrowser { background: #fbfbf9; color: #1d1d1d; }")
        self._stream: QTextCursor | None = None

    def show_html(self, text: str, streaming: bool) -> None:
        """Replace the content; with ``streaming`` the last bubble receives `append` text."""
        self.setHtml(text)
        self._stream = None
        if streaming:
            tables = [f for f in self.document().rootFrame().childFrames() if isinstance(f, QTextTable)]
            if tables:
                self._stream = tables[-1].cellAt(0, 0).lastCursorPosition()
        self.scroll_to_end()

    def append(self, text: str) -> bool:
        """Add streamed text to the last bubble; False when nothing is streaming here."""
        if self._stream is None:
            return False
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self._stream.insertText(text)
        if at_end:
            self.scroll_to_end()
        return True

    def scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())


class ChatPanelUI(QWidget):
    """The panel's child widgets and layout (no behaviour)."""

    def _build(self) -> None:
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        self.load_button = QPushButton("Load model")
        self.setup_button = QPushButton("Set up MedPLIB…")
        self.setup_button.setToolTip("Where the MedPLIB weights go, and the device (segmentation keeps using LiteMedSAM)")
        self.progress = QProgressBar()
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.conv_combo = QComboBox()
        self.conv_combo.setToolTip("Conversations of this scan (one per slice); pick one to go to its slice")
        self.clear_button = QToolButton()
        self.clear_button.setText("New chat")
        self.clear_button.setToolTip("Forget this slice's conversation")
        self.transcript = TranscriptView()
        self.region_combo = QComboBox()
        self.region_combo.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.region_combo.setToolTip("Regions on this slice, the one touched last first")
        self.use_region = QPushButton("Use as <region>")
        self.use_region.setToolTip("Attach the selected region to the question (inserts <region>)")
        self.attached_label = QLabel()
        self.attached_label.setWordWrap(True)
        self.unattach = QToolButton()
        self.unattach.setText("✕")
        self.unattach.setToolTip("Detach the regions")
        self.about_label = QLabel()
        self.about_label.setObjectName("chat_about")
        self.about_label.setToolTip("The slice shown in the view you work in (clicked, drawn on or scrolled last)")
        self.input = QuestionEdit()
        self.input.setObjectName("chat_input")
        self.input.setPlaceholderText("Ask about this slice — <region> stands for the selected "
                                      "region. Enter sends, Shift+Enter breaks the line.")
        self.input.setMaximumHeight(64)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.footer = QLabel('<span style="color:#8a5a00">Research use only — not for clinical '
                             'decisions.</span> <a href="notice">Licence</a>')
        self.footer.setToolTip("The model's licence and intended use")
        self.footer.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.state_label, 1)
        top.addWidget(self.load_button)
        top.addWidget(self.setup_button)
        conv = QHBoxLayout()
        conv.addWidget(QLabel("Conversation:"))
        conv.addWidget(self.conv_combo, 1)
        conv.addWidget(self.clear_button)
        reg = QHBoxLayout()
        reg.addWidget(QLabel("Region:"))
        reg.addWidget(self.region_combo, 1)
        reg.addWidget(self.use_region)
        att = QHBoxLayout()
        att.addWidget(self.attached_label, 1)
        att.addWidget(self.unattach)
        btns = QHBoxLayout()
        btns.addWidget(self.footer, 1)
        btns.addWidget(self.stop_button)
        btns.addWidget(self.send_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(4)
        for item in (top, self.progress, conv, self.transcript, reg, att, self.about_label, self.input, btns):
            (lay.addLayout if isinstance(item, QHBoxLayout) else lay.addWidget)(item)
        lay.setStretchFactor(self.transcript, 1)
