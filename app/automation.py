"""Scripted sessions for tests, screenshots and demos (``MEDPLIB_STUDIO_HOOK=script.py``).

The script runs inside the live app after the window shows, with the real widgets: it drives
them with simulated mouse and keyboard events (the same code paths a user triggers). Its
namespace holds ``window``, ``app``, ``QTest``, ``Qt`` and the helpers below.
"""

from __future__ import annotations

import os
import runpy
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QEventLoop, QPoint, QPointF, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication


def wait(ms: int) -> None:
    """Run the event loop for ``ms`` milliseconds (releases the GIL, unlike QTest.qWait)."""
    loop = QEventLoop()
    QTimer.singleShot(int(ms), loop.quit)
    loop.exec()


def wait_until(predicate, timeout: float = 30.0, step_ms: int = 20) -> bool:
    """Process events until ``predicate()`` is true or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        wait(step_ms)
    return bool(predicate())


def wait_signal(signals, predicate, timeout: float = 30.0) -> bool:
    """Run the event loop until one of ``signals`` fires with ``predicate()`` true, or ``timeout``
    seconds pass. Unlike `wait_until` it does not poll, so it takes no CPU from what it waits for."""
    if predicate():
        return True
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)

    def check(*_) -> None:
        if predicate():
            loop.quit()

    for sig in signals:
        sig.connect(check)
    timer.start(int(timeout * 1000))
    try:
        loop.exec()
    finally:
        timer.stop()
        for sig in signals:
            sig.disconnect(check)
    return bool(predicate())


def image_point(canvas, x: float, y: float) -> QPoint:
    """Screen position (widget coordinates) of image position (x=col, y=row)."""
    p = canvas.to_screen(x, y)
    return QPoint(round(p.x()), round(p.y()))


def drag(canvas, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton, steps: int = 8) -> None:
    """Press, move in steps, release: a real drag on the widget."""
    QTest.mousePress(canvas, button, Qt.KeyboardModifier.NoModifier, start)
    for n in range(1, steps + 1):
        p = start + (end - start) * (n / steps)
        QTest.mouseMove(canvas, p)
        QApplication.processEvents()
    QTest.mouseRelease(canvas, button, Qt.KeyboardModifier.NoModifier, end)


def _mouse_move_with_buttons(canvas, pos: QPoint, buttons) -> None:
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtCore import QEvent

    ev = QMouseEvent(QEvent.Type.MouseMove, QPointF(pos), canvas.mapToGlobal(QPointF(pos)),
                     Qt.MouseButton.NoButton, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas, ev)


def run_hook(window, app) -> None:
    """Run the script named by MEDPLIB_STUDIO_HOOK (errors are printed, and exit code 3)."""
    path = os.environ.get("MEDPLIB_STUDIO_HOOK")
    if not path:
        return
    namespace = {"window": window, "app": app, "QTest": QTest, "Qt": Qt, "QPoint": QPoint,
                 "wait_until": wait_until, "wait": wait, "image_point": image_point, "drag": drag,
                 "mouse_move": _mouse_move_with_buttons}

    def go():
        window.raise_()
        window.activateWindow()  # shortcuts need an active window
        wait_until(lambda: app.activeWindow() is not None, 5.0)
        try:
            runpy.run_path(str(Path(path)), init_globals=namespace, run_name="__medplib_hook__")
        except SystemExit as exc:
            app.exit(int(exc.code or 0))
        except BaseException:
            traceback.print_exc()
            app.exit(3)

    QTimer.singleShot(0, go)
