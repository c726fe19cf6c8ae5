"""`LatestJob`: recompute something off the GUI thread whenever its inputs change, keeping only
the newest result (statistics table, 3D surfaces).

``request()`` (after an edit) waits ``delay_ms`` for more changes, then runs ``make()`` on the
GUI thread (it snapshots the inputs, e.g. copies the label array under the session's lock) and
the returned callable on a worker. A request while a job runs cancels it (the job sees
``cancel()``) and starts again once it has stopped, so a burst of edits costs one computation
and a result never describes older labels than the last request.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from .workers import TaskRunner


class LatestJob(QObject):
    """One background computation, restarted on request; ``finished`` carries its result."""

    finished = Signal(object)
    failed = Signal(object)
    busy_changed = Signal(bool)

    def __init__(self, make: Callable[[], Callable[..., Any] | None], delay_ms: int = 300,
                 parent: QObject | None = None, name: str = "job"):
        super().__init__(parent)
        self.make = make  # GUI thread: snapshot inputs, return fn(cancel, progress) or None
        self.runner = TaskRunner(1, self, name)
        self.name = name
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(delay_ms)
        self.timer.timeout.connect(self._start)
        self._task = None
        self._again = False
        self.progress: Callable[[int, int], None] | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None or self.timer.isActive()

    def request(self, now: bool = False) -> None:
        """Inputs changed: compute again (soon, or at once with ``now``)."""
        if self._task is not None:
            self._again = True
            self._task.cancel()
            return
        if now:
            self.timer.stop()
            self._start()
        else:
            self.timer.start()
            self.busy_changed.emit(True)

    def cancel(self) -> None:
        """Stop the running job and forget pending requests (another scan, the window closes)."""
        self.timer.stop()
        self._again = False
        if self._task is not None:
            self._task.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        return self.runner.wait(msecs)

    def _start(self) -> None:
        fn = self.make()
        if fn is None:
            self.busy_changed.emit(False)
            return
        self.busy_changed.emit(True)
        self._task = self.runner.submit(fn, name=self.name, pass_cancel=True, pass_progress=True,
                                        on_done=self._done, on_error=self._error, on_cancel=self._stopped,
                                        on_progress=lambda d, t: self.progress and self.progress(d, t))

    def _finish(self) -> bool:
        """The task ended; True when a newer request is waiting (then it starts)."""
        self._task = None
        if self._again:
            self._again = False
            self.timer.start()
            return True
        self.busy_changed.emit(False)
        return False

    def _done(self, result) -> None:
        if not self._finish():
            self.finished.emit(result)

    def _error(self, exc) -> None:
        if not self._finish():
            self.failed.emit(exc)

    def _stopped(self) -> None:
        self._finish()
