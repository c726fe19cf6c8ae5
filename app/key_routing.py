"""Canvas keys work whenever the pointer is on the image, wherever the keyboard focus is.

A text box elsewhere in the window (the chat question, a label name) keeps the keyboard focus
after use, so Enter, Esc, the tool letters and the slice keys would go to it while the user looks
at the image. `CanvasKeyRouter` watches the window's key events: when one is meant for another
widget but the pointer rests on a slice canvas, the canvas takes the focus and the key does what
it does there — a window action bound to it (Enter accepts, E picks the eraser) or the canvas's
own key (arrows scroll). Keys with Ctrl/Alt/Meta that no action uses (copy, paste) stay with the
text box.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QWidget

from .canvas import SliceCanvas

_COMMAND = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
_IGNORED_KEYS = {Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta, Qt.Key.Key_AltGr,
                 Qt.Key.Key_CapsLock, Qt.Key.Key_unknown}


class CanvasKeyRouter(QObject):
    """An application event filter for one main window (see the module docstring)."""

    def __init__(self, window, canvases):
        super().__init__(window)
        self.win = window
        self.canvases: list[SliceCanvas] = list(canvases)
        self._routing = False
        QApplication.instance().installEventFilter(self)

    def hovered(self) -> SliceCanvas | None:
        """The visible canvas under the pointer, if any."""
        return next((c for c in self.canvases if c.isVisible() and c.hovered), None)

    def action_for(self, ev: QKeyEvent):
        """The enabled window action bound to the key of ``ev``, or None."""
        mods = ev.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        seq = QKeySequence(ev.key() | mods.value)
        for act in self.win.actions():
            if act.isEnabled() and any(s.matches(seq) == QKeySequence.SequenceMatch.ExactMatch
                                       for s in act.shortcuts()):
                return act
        return None

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 (Qt API)
        kind = ev.type()
        if kind == QEvent.Type.MouseButtonPress and not isinstance(obj, SliceCanvas):
            for c in self.canvases:  # a press elsewhere: the pointer is not on an image
                c.pointer_left()
            return False
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        if self._routing or not isinstance(obj, QWidget) or obj.window() is not self.win \
                or isinstance(QApplication.focusWidget(), SliceCanvas):
            return False  # a canvas has the keys already (or passes one on to its parents)
        if ev.key() in _IGNORED_KEYS:
            return False
        canvas = self.hovered()
        if canvas is None:
            return False
        action = self.action_for(ev)
        if action is None and ev.modifiers() & _COMMAND:
            return False  # Ctrl+C and the like stay with the text box
        if kind == QEvent.Type.ShortcutOverride:
            ev.accept()  # claimed: the key press that follows is handled below, for the canvas
            return True
        canvas.setFocus(Qt.FocusReason.MouseFocusReason)
        self._routing = True
        try:
            if action is not None:
                action.trigger()
            else:
                QApplication.sendEvent(canvas, QKeyEvent(QEvent.Type.KeyPress, ev.key(), ev.modifiers(),
                                                         ev.text(), ev.isAutoRepeat(), ev.count()))
        finally:
            self._routing = False
        return True
