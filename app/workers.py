"""Background work on QThreadPool threads, with results delivered on the GUI thread.

`TaskRunner.submit` runs ``fn`` on a pool thread. Its callbacks (``on_done``, ``on_error``,
``on_progress``, ``on_cancel``) are always called on the GUI thread, through queued signals
relayed by the runner (a QObject living on the GUI thread). A task can be cancelled; the
function sees it through the ``cancel`` callable it receives when ``pass_cancel=True``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from medplib_core.errors import CancelledError

log = logging.getLogger(__name__)


class _Signals(QObject):
    progress = Signal(int, int, int)
    done = Signal(int, object)
    failed = Signal(int, object)
    cancelled = Signal(int)


@dataclass
class Task:
    """Handle of a submitted task."""

    id: int
    name: str
    event: threading.Event = field(default_factory=threading.Event)
    finished: bool = False

    def cancel(self) -> None:
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()


class _Runnable(QRunnable):
    def __init__(self, task: Task, signals: _Signals, fn: Callable, args, kwargs):
        super().__init__()
        self.setAutoDelete(True)
        self.task, self.signals, self.fn, self.args, self.kwargs = task, signals, fn, args, kwargs

    def run(self) -> None:  # pool thread
        tid = self.task.id
        try:
            result = self.fn(*self.args, **self.kwargs)
        except CancelledError:
            self.signals.cancelled.emit(tid)
            return
        except BaseException as exc:  # reported to the GUI as a dialog, never re-raised here
            exc.traceback_text = traceback.format_exc()  # type: ignore[attr-defined]
            log.warning("task %s failed:\n%s", self.task.name, exc.traceback_text)  # type: ignore[attr-defined]
            self.signals.failed.emit(tid, exc)
            return
        if self.task.cancelled:
            self.signals.cancelled.emit(tid)
        else:
            self.signals.done.emit(tid, result)


class TaskRunner(QObject):
    """A thread pool plus the bookkeeping that brings results back to the GUI thread."""

    def __init__(self, max_threads: int = 1, parent: QObject | None = None, name: str = "tasks"):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, int(max_threads)))
        self.name = name
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Task, dict[str, Callable | None]]] = {}
        self._signals = _Signals(self)
        self._signals.progress.connect(self._on_progress)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)
        self._signals.cancelled.connect(self._on_cancelled)

    def submit(self, fn: Callable, *args: Any, name: str = "", on_done: Callable | None = None,
               on_error: Callable | None = None, on_progress: Callable | None = None,
               on_cancel: Callable | None = None, pass_progress: bool = False,
               pass_cancel: bool = False, priority: int = 0, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` in the pool; ``progress=``/``cancel=`` are added on request."""
        task = Task(next(self._ids), name or getattr(fn, "__name__", "task"))
        if pass_progress:
            kwargs["progress"] = lambda done, total: self._signals.progress.emit(task.id, int(done), int(total))
        if pass_cancel:
            kwargs["cancel"] = task.event.is_set
        self._callbacks[task.id] = (task, {"done": on_done, "error": on_error, "progress": on_progress,
                                          "cancel": on_cancel})
        self.pool.start(_Runnable(task, self._signals, fn, args, kwargs), priority)
        return task

    def busy(self) -> bool:
        return bool(self._callbacks)

    def cancel_all(self) -> None:
        for task, _ in self._callbacks.values():
            task.cancel()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the pool is idle (used on shutdown and in tests)."""
        return self.pool.waitForDone(msecs)

    def _pop(self, tid: int):
        item = self._callbacks.pop(tid, None)
        if item:
            item[0].finished = True
        return item

    @Slot(int, int, int)
    def _on_progress(self, tid: int, done: int, total: int) -> None:
        item = self._callbacks.get(tid)
        if item and item[1]["progress"] and not item[0].cancelled:
            item[1]["progress"](done, total)

    @Slot(int, object)
    def _on_done(self, tid: int, result: object) -> None:
        item = self._pop(tid)
        if item and item[1]["done"]:
            item[1]["done"](result)

    @Slot(int, object)
    def _on_failed(self, tid: int, exc: object) -> None:
        item = self._pop(tid)
        if item and item[1]["error"]:
            item[1]["error"](exc)

    @Slot(int)
    def _on_cancelled(self, tid: int) -> None:
        item = self._pop(tid)
        if item and item[1]["cancel"]:
            item[1]["cancel"]()
