"""Two lanes of engine work, so a click never waits behind somebody else's long answer.

* `SegmentationLane`: one worker thread runs every call into the segmentation engine
  (LiteMedSAM's OpenVINO requests are not thread-safe, and one device is best fed one call at
  a time), most urgent first: a prompt, then the encoding a prompt waits for, then background
  work (pre-encoding, 3D propagation slices). A propagation job therefore delays a click by
  at most one slice.
* `GenerationLane`: MedPLIB work (image encoding, grounding, chat answers). Each answer runs
  on its own thread, but only the holder of a turn computes; at every token an answer hands
  the turn to the next waiting one (round-robin per token), and while the segmentation lane
  has interactive work the answers pause between tokens (the click goes first). Concurrent
  answers thus share the device fairly; time to first token of a new answer is one token of
  each running answer plus its own prefill. Jobs that never call ``step`` (image encoding, a
  grounding `predict`; both hold `MedplibEngine.model_lock`) run whole once they have a turn.

The generation lane is the place for a batched decoder: `GenerationLane.submit` hands a job
a ``step`` function that the job calls between tokens; a continuous-batching lane would keep
the same ``submit`` and run the ready answers' next tokens as one batch instead.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")
INTERACTIVE, ENCODE, BACKGROUND = 0, 1, 2


class Busy(Exception):
    """A queue is full; ``status`` 429 (this client) or 503 (the server), retry later."""

    def __init__(self, status: int, reason: str, retry_after: int = 1):
        self.status, self.reason, self.retry_after = status, reason, retry_after
        super().__init__(reason)


class ClientCounter:
    """Requests in flight per client, bounded (429 beyond the bound)."""

    def __init__(self, limit: int, retry_after: int = 1):
        self.limit, self.retry_after = limit, retry_after
        self._n: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, client: str) -> None:
        with self._lock:
            n = self._n.get(client, 0)
            if n >= self.limit:
                raise Busy(429, f"client {client!r} has {n} requests in flight (limit {self.limit})",
                           self.retry_after)
            self._n[client] = n + 1

    def leave(self, client: str) -> None:
        with self._lock:
            n = self._n.get(client, 1) - 1
            if n <= 0:
                self._n.pop(client, None)
            else:
                self._n[client] = n


class SegmentationLane:
    """A single worker thread with a priority queue (lower number first, FIFO within)."""

    def __init__(self, queue_limit: int, retry_after: int = 1, name: str = "segmentation-lane"):
        self.queue_limit, self.retry_after = queue_limit, retry_after
        self._heap: list[tuple[int, int, Future, Callable[[], Any], str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._interactive = 0  # queued or running priority-0/1 items
        self._closed = False
        self.done_count = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], priority: int = INTERACTIVE, tag: str = "") -> "Future[T]":
        """Queue ``fn``; raises `Busy` (503) when too many urgent requests are waiting."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise Busy(503, "the server is shutting down", self.retry_after)
            if priority < BACKGROUND and self._interactive >= self.queue_limit:
                raise Busy(503, f"{self._interactive} segmentation requests are waiting "
                                f"(limit {self.queue_limit})", self.retry_after)
            if priority < BACKGROUND:
                self._interactive += 1
            heapq.heappush(self._heap, (priority, next(self._seq), fut, fn, tag))
            self._cond.notify()
        return fut

    def drop(self, tag: str) -> int:
        """Remove queued background items carrying ``tag`` (a replaced pre-encoding list)."""
        with self._cond:
            keep = [it for it in self._heap if not (it[0] == BACKGROUND and it[4] == tag)]
            dropped = [it for it in self._heap if it[0] == BACKGROUND and it[4] == tag]
            self._heap = keep
            heapq.heapify(self._heap)
        for it in dropped:
            it[2].cancel()
        return len(dropped)

    @property
    def interactive_pending(self) -> bool:
        """True while a prompt or the encoding it waits for is queued or running."""
        return self._interactive > 0

    def depth(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                priority, _, fut, fn, _ = heapq.heappop(self._heap)
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:  # handed to the waiting request
                        fut.set_exception(exc)
            finally:
                with self._cond:
                    if priority < BACKGROUND:
                        self._interactive -= 1
                    self.done_count += 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending, self._heap = self._heap, []
            self._interactive -= sum(1 for it in pending if it[0] < BACKGROUND)
            self._cond.notify_all()
        for it in pending:
            it[2].cancel()
        self._thread.join(timeout=30)


class _Turns:
    """A fair turn: one holder at a time, handed on in arrival order."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._holder: object | None = None

    def acquire(self, who: object) -> None:
        with self._cond:
            self._queue.append(who)
            while self._holder is not None or self._queue[0] is not who:
                self._cond.wait()
            self._queue.popleft()
            self._holder = who

    def release(self, who: object) -> None:
        with self._cond:
            if self._holder is who:
                self._holder = None
                self._cond.notify_all()

    def hand_on(self, who: object) -> None:
        """Let every answer waiting now take one turn, then continue (no-op when alone)."""
        with self._cond:
            if not self._queue:
                return
        self.release(who)
        self.acquire(who)


StepFn = Callable[[], bool]  # called between tokens; True means "stop" (the cancel contract)


class GenerationLane:
    """Generation jobs on threads of their own, computing one at a time, per-token round-robin."""

    def __init__(self, max_jobs: int, yield_to: Callable[[], bool] | None = None,
                 retry_after: int = 1, max_pause_s: float = 2.0):
        self.max_jobs, self.retry_after = max_jobs, retry_after
        self._yield_to = yield_to
        self._max_pause = max_pause_s
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="generation-lane")
        self._turns = _Turns()
        self._lock = threading.Lock()
        self._jobs = 0
        self.steps = 0

    @property
    def active(self) -> int:
        return self._jobs

    def submit(self, job: Callable[[StepFn], T], cancel: Callable[[], bool] | None = None) -> "Future[T]":
        """Run ``job(step)``; the job passes ``step`` wherever the engine takes a cancel
        callback (``ChatSession.ask(cancel=step)``). Raises `Busy` (503) when full."""
        with self._lock:
            if self._jobs >= self.max_jobs:
                raise Busy(503, f"{self._jobs} answers are being generated (limit {self.max_jobs})",
                           self.retry_after)
            self._jobs += 1
        try:
            return self._pool.submit(self._run, job, cancel)
        except RuntimeError as exc:  # pool shut down
            with self._lock:
                self._jobs -= 1
            raise Busy(503, "the server is shutting down", self.retry_after) from exc

    def _run(self, job: Callable[[StepFn], T], cancel: Callable[[], bool] | None) -> T:
        me = object()

        def step() -> bool:
            if cancel is not None and cancel():
                return True
            self.steps += 1
            self._turns.hand_on(me)
            self._pause_for_clicks()
            return bool(cancel is not None and cancel())

        self._turns.acquire(me)
        try:
            self._pause_for_clicks()
            return job(step)
        finally:
            self._turns.release(me)
            with self._lock:
                self._jobs -= 1

    def _pause_for_clicks(self) -> None:
        if self._yield_to is None:
            return
        deadline = time.monotonic() + self._max_pause
        while self._yield_to() and time.monotonic() < deadline:
            time.sleep(0.002)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
