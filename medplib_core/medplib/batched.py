"""Continuous batching of MedPLIB answers: many conversations decoded together, one token
per request per step, requests joining and leaving between steps.

    sched = DecodeScheduler(loaded.model, loaded.tokenizer, max_batch=16)
    sched.start()                                  # or drive it: handle.result() steps it
    h = sched.submit(DecodeRequest(embeds, GenerationSettings(max_new_tokens=256)))
    for delta in h.stream():                       # text as it is decoded
        ...
    res = h.result()                               # GenerationResult: ids, text, <SEG> states
    h.cancel()                                     # any time, from any thread

Every request gets a row of a `StaticKVCache`; active rows are kept first, so one decode step
(`FastLM.decode`) runs rows ``0..b-1``. A new request is prefilled into a free row between two
steps, a finished or cancelled one leaves at once (the last active row moves into its place).
Greedy and teacher-forced tokens are chosen on the device; the chosen ids reach the host
asynchronously (pinned buffer + event) while the next step runs, so the host never stalls the
GPU. The final-norm state of every step goes to a small per-row ring on the device, from which
the state that predicted ``<SEG>`` is copied (spec §11.1), so streaming, ``<SEG>`` capture,
stop strings and cancel behave as in `generation.generate`. Sampling (temperature > 0) reads
that row's logits on the host with the request's seeded generator, as the reference loop does.

Finished rows stay cached with their position keys (``DecodeRequest.prefix_keys``): a later
request that starts with the same positions (the next turn of a conversation) reuses them.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch

from .cuda_graphs import GraphRunner
from .detok import IncrementalDetokenizer
from .fast_lm import FastLM
from .kv_cache import common_prefix
from .generation import GenerationResult, GenerationSettings, choose_token, stop_string_seen

RING = 4  # decode states kept per row (> the host's lag behind the device)


@dataclass
class DecodeRequest:
    """One answer to decode. ``embeds``: the prompt [L, H] (image/region vectors inserted);
    ``prefix_keys``: one hashable per position (token id, ("img", uid, j), ...) to reuse
    cached keys/values of an earlier request with the same leading positions."""

    embeds: torch.Tensor
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    prefix_keys: Sequence[Hashable] | None = None
    on_text: Callable[[str], None] | None = None
    tag: Any = None


class RequestHandle:
    """What `DecodeScheduler.submit` returns: stream, cancel, wait for the result."""

    def __init__(self, scheduler: "DecodeScheduler", request: DecodeRequest, rid: int):
        self.id = rid
        self.request = request
        self._sched = scheduler
        self._deltas: "queue.SimpleQueue[str | None]" = queue.SimpleQueue()
        self._done = threading.Event()
        self._cancel = False
        self._result: GenerationResult | None = None
        self._error: BaseException | None = None
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.token_times: list[float] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop at the next step (result().stop_reason == "cancelled")."""
        self._cancel = True
        self._sched._wake()

    def result(self, timeout: float | None = None, cancel: Callable[[], bool] | None = None
               ) -> GenerationResult:
        """Wait for the answer (stepping the scheduler when no background loop runs);
        ``request.on_text`` is called on this thread; ``cancel()`` is polled meanwhile."""
        for _ in self._wait(timeout, cancel, deliver=True):
            pass
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stream(self, timeout: float | None = None) -> Iterator[str]:
        """Yield text deltas until the answer is complete."""
        yield from self._wait(timeout, None, deliver=False)
        if self._error is not None:
            raise self._error

    def _wait(self, timeout, cancel, deliver) -> Iterator[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while True:
                try:
                    d = self._deltas.get_nowait()
                except queue.Empty:
                    break
                if d is None:
                    return
                if deliver and self.request.on_text:
                    self.request.on_text(d)
                yield d
            if self.done and self._deltas.empty():  # the end was consumed by another reader
                return
            if cancel is not None and not self._cancel and cancel():
                self.cancel()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"request {self.id} did not finish in time")
            self._sched._drive(self)

    def _finish(self, result: GenerationResult | None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._deltas.put(None)
        self._done.set()


@dataclass
class _Slot:
    """Host-side state of a request in a row."""

    handle: RequestHandle
    row: int
    prompt_len: int
    limit: int
    res: GenerationResult
    det: IncrementalDetokenizer
    keys: list
    gen: torch.Generator | None
    sampling: bool
    launched: int = 1  # tokens chosen on the device (the prefill chooses the first)
    started: float = 0.0
    finished: bool = False
    prev_prompt: torch.Tensor | None = None
    states: dict = field(default_factory=dict)  # step -> state, only for seg_fallback


class DecodeScheduler:
    """Continuous-batching decoder over one loaded MedPLIB model (see the module docstring).

    ``max_batch``: rows decoded together; ``cached_rows``: extra rows that keep finished
    conversations for prefix reuse; ``max_len``: positions per row (prompt + answer);
    ``cuda_graphs``: "auto" (on CUDA), True or False; ``host_lag``: steps the host may be
    behind the device ("auto": 1 on CUDA, where the copy is asynchronous, 0 on a CPU)."""

    def __init__(self, model, tokenizer, max_batch: int = 8, max_len: int = 2048,
                 cached_rows: int = 1, cuda_graphs: bool | str = "auto", moe_kernel: str = "auto",
                 host_lag: int | str = "auto"):
        self.fast = FastLM.for_model(model, moe_kernel)
        if host_lag == "auto":
            host_lag = 1 if self.fast.device.type == "cuda" else 0
        if host_lag not in (0, 1):
            raise ValueError("host_lag is 0 or 1")
        self.host_lag = host_lag
        self.tok = tokenizer
        self.max_batch = max_batch
        self.rows = max_batch + cached_rows
        self.cache = self.fast.new_cache(self.rows, max_len)
        dev, R = self.fast.device, self.rows
        z = dict(device=dev, dtype=torch.long)
        self.tokens_in = torch.zeros(R, **z)
        self.pos = torch.full((R,), self.cache.scratch, **z)
        self.active = torch.zeros(R, **z)
        self.steps = torch.zeros(R, **z)
        self.forced = torch.zeros(R, max_len, **z)  # teacher-forced answers (as long as a row)
        self.forced_len = torch.zeros(R, **z)
        self.next_tok = torch.zeros(R, **z)
        self.ring = torch.zeros(R, RING, self.fast.hidden, device=dev, dtype=self.fast.dtype)
        self.logits_buf = torch.zeros(R, self.fast.lm_head.shape[0], device=dev)  # sampling
        self._state = [self.tokens_in, self.pos, self.active, self.steps, self.forced,
                       self.forced_len, self.next_tok, self.ring]
        self.seg_id = tokenizer.added.get("<SEG>")
        self._slots: list[_Slot | None] = [None] * R  # by row; active rows first
        self._n_active = 0
        self._row_keys: list[list | None] = [None] * R  # cached rows' position keys
        self._row_used = [0.0] * R
        self._waiting: list[RequestHandle] = []
        self._pending: list[tuple] = []  # launched steps whose ids the host has not read
        self._ids = itertools.count(1)
        self._mutex = threading.Lock()
        self._step_lock = threading.Lock()
        self._wake_cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        use = (dev.type == "cuda") if cuda_graphs == "auto" else bool(cuda_graphs)
        self.graphs = GraphRunner(self) if use and dev.type == "cuda" else None
        self.stats = {"steps": 0, "prefills": 0, "reused_positions": 0, "graph_steps": 0}

    # -- public API ---------------------------------------------------------------------------
    def submit(self, request: DecodeRequest) -> RequestHandle:
        emb = request.embeds
        if emb.dim() == 3:
            request.embeds = emb = emb[0]
        if request.prefix_keys is not None and len(request.prefix_keys) != emb.shape[0]:
            raise ValueError("prefix_keys needs one key per prompt position")
        if emb.shape[0] >= self.cache.capacity:
            raise ValueError(f"the prompt ({emb.shape[0]} positions) does not fit a row "
                             f"of {self.cache.capacity}")
        forced = request.settings.forced_answer
        cap = self.cache.capacity
        if forced is not None and len(self.tok.encode(forced, add_bos=False)) + 1 > cap:
            raise ValueError(f"the forced answer does not fit a row of {cap}")
        h = RequestHandle(self, request, next(self._ids))
        with self._mutex:
            self._waiting.append(h)
        self._wake()
        return h

    def start(self) -> None:
        """Decode in a background thread until `stop`."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="medplib-decode", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        t, self._thread = self._thread, None
        self._stop = True
        self._wake()
        if t is not None:
            t.join()

    def run_until_idle(self) -> None:
        while self.busy:
            self.step()

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._n_active or self._pending)

    @property
    def n_active(self) -> int:
        return self._n_active

    def step(self) -> bool:
        """Admit waiting requests, launch one decode step, read what the device finished,
        let finished requests leave. Returns whether work remains."""
        with self._step_lock:
            self._admit()
            live = [s for s in self._slots[:self._n_active] if not s.finished]
            if live:
                self._launch_decode(live)
            # the host reads a step's ids while the next one runs; with nothing launched
            # (every row is done on the device) it reads everything still pending
            lag = 0 if any(s.sampling for s in live) or not live else self.host_lag
            self._drain(keep=lag)
            self._retire()
            return self.busy

    # -- scheduling ---------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._wake_cv:
            self._wake_cv.notify_all()

    def _loop(self) -> None:
        while not self._stop:
            if not self.step():
                with self._wake_cv:
                    if not self._waiting and not self._stop:
                        self._wake_cv.wait(0.05)

    def _drive(self, handle: RequestHandle) -> None:
        """Called by a thread waiting for ``handle``: step unless someone else does."""
        if self._thread is not None or not self._step_lock.acquire(timeout=0.02):
            handle._done.wait(0.02)
            return
        self._step_lock.release()
        if not handle.done:
            self.step()

    def _admit(self) -> None:
        while self._n_active < self.max_batch:
            with self._mutex:
                if not self._waiting:
                    return
                h = self._waiting.pop(0)
            if h._cancel:
                h._finish(GenerationResult([], "", "cancelled"))
                continue
            try:
                self._prefill(h)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                h._finish(None, exc)

    def _pick_row(self, keys: list | None, length: int) -> tuple[int, int]:
        """A spare row (>= n_active) and how many leading positions it can reuse."""
        best, reuse = None, 0
        spare = range(self._n_active, self.rows)
        if keys is not None:
            for r in spare:
                cached = self._row_keys[r]
                if cached:
                    n = common_prefix(cached, keys)
                    if n > reuse:
                        best, reuse = r, n
        if best is None:
            free = [r for r in spare if self._row_keys[r] is None]
            best = free[0] if free else min(spare, key=lambda r: self._row_used[r])
        return best, min(reuse, length - 1)

    def _move_row(self, a: int, b: int) -> None:
        """Swap rows ``a`` and ``b``: cache contents, device state and host bookkeeping."""
        if a == b:
            return
        self.cache.swap_rows(a, b)
        for t in self._state:  # integer indexing: no host-to-device copy
            tmp = t[a].clone()
            t[a] = t[b]
            t[b] = tmp
        for lst in (self._slots, self._row_keys, self._row_used):
            lst[a], lst[b] = lst[b], lst[a]
        for r in (a, b):
            if self._slots[r] is not None:
                self._slots[r].row = r

    def _prefill(self, h: RequestHandle) -> None:
        req, s = h.request, h.request.settings
        emb = req.embeds
        L = emb.shape[0]
        keys = list(req.prefix_keys) if req.prefix_keys is not None else None
        row, reuse = self._pick_row(keys, L)
        target = self._n_active
        self._move_row(row, target)
        row = target
        self._row_keys[row] = None
        t0 = time.perf_counter()
        hidden = self.fast.prefill(self.cache, row, reuse, emb[reuse:].to(self.fast.device))
        self.stats["prefills"] += 1
        self.stats["reused_positions"] += reuse
        room = min(self.cache.capacity, self.fast.max_positions) - L
        forced = None
        if s.forced_answer is not None:
            forced = self.tok.encode(s.forced_answer, add_bos=False) + [self.tok.eos_id]
        limit = len(forced) if forced is not None else s.max_new_tokens
        res = GenerationResult(ids=[], text="", stop_reason="max_new_tokens",
                               prompt_positions=L, reused_positions=reuse)
        if limit > room:
            limit, res.stop_reason = max(room, 0), "context_full"
        sampling = forced is None and s.temperature >= 1e-4
        gen = torch.Generator().manual_seed(s.seed) if sampling else None
        slot = _Slot(h, row, L, limit, res, IncrementalDetokenizer(self.tok), keys or [],
                     gen, sampling, started=t0)
        if s.seg_fallback:
            slot.prev_prompt = (hidden[-2] if L - reuse > 1 else hidden[-1]).clone()
        self._slots[row] = slot
        self._n_active += 1
        if limit == 0:
            slot.finished = True
            self._finish_slot(slot)
            return
        dev = self.fast.device
        self.pos[row] = L
        self.active[row] = 1
        self.steps[row] = 0
        self.forced_len[row] = len(forced) if forced is not None else 0
        if forced is not None:
            self.forced[row, :len(forced)] = torch.tensor(forced, device=dev)
        rows = torch.arange(row, row + 1, device=dev)
        self._choose(hidden[-1:], rows)
        self._queue(rows, [slot], sampling)

    def _choose(self, hidden: torch.Tensor, rows: torch.Tensor) -> None:
        """Pick each row's next token on the device (greedy or teacher-forced), keep the state
        in the ring, advance the step counters. No host synchronisation."""
        logits = self.fast.logits(hidden)
        self.logits_buf[rows] = logits
        st = self.steps[rows]
        forced = self.forced[rows, st.clamp(max=self.forced.shape[1] - 1)]
        nxt = torch.where(st < self.forced_len[rows], forced, logits.argmax(-1))
        self.ring[rows, st % RING] = hidden
        self.next_tok[rows] = nxt
        self.tokens_in[rows] = nxt
        self.steps[rows] = st + 1

    def decode_step(self, b: int, window: int) -> None:
        """Rows ``0..b-1``: feed each row's token, choose the next (the graph-captured part)."""
        act = self.active[:b]
        pos = self.pos[:b]
        attn_len = torch.where(act.bool(), pos + 1, torch.ones_like(pos))
        hidden = self.fast.decode(self.cache, self.tokens_in[:b], pos, attn_len, window)
        self._choose(hidden, torch.arange(b, device=self.fast.device))
        self.pos[:b] = torch.where(act.bool(), pos + 1, pos)

    def _launch_decode(self, live: list[_Slot]) -> None:
        n = self._n_active
        need = max(self.cache.lengths[s.row] + s.launched for s in live)  # positions attended
        need = min(need, self.cache.max_len)
        if self.graphs is not None and self.graphs.run(n, need):
            self.stats["graph_steps"] += 1
        else:
            self.decode_step(n, need)
        self.stats["steps"] += 1
        slots = list(self._slots[:n])
        for s in live:
            s.launched += 1
        self._queue(torch.arange(n, device=self.fast.device), slots,
                    any(s.sampling for s in live))

    def _queue(self, rows: torch.Tensor, slots: list, sampling: bool) -> None:
        """Copy the chosen ids to the host without waiting (pinned memory + event on CUDA)."""
        ids = self.next_tok[rows]
        logits = self.logits_buf[rows].cpu() if sampling else None  # sampling: synchronous
        if ids.is_cuda:
            host = torch.empty(ids.shape, dtype=ids.dtype, pin_memory=True)
            host.copy_(ids, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record()
        else:
            host, ev = ids.clone(), None
        self._pending.append((host, ev, slots, logits))

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            host, ev, slots, logits = self._pending.pop(0)
            if ev is not None:
                ev.synchronize()
            ids = host.tolist()
            for i, slot in enumerate(slots):
                if slot is None or slot.finished:
                    continue
                tok = ids[i]
                if slot.sampling:
                    tok = choose_token(logits[i], slot.handle.request.settings, slot.gen)
                    self.tokens_in[slot.row] = tok
                self._accept(slot, tok)

    def _accept(self, slot: _Slot, tok: int) -> None:
        """The host side of one generated token (same order of checks as `generate`)."""
        h, s, res = slot.handle, slot.handle.request.settings, slot.res
        step = len(res.ids)
        now = time.perf_counter()
        if h._cancel:
            res.stop_reason = "cancelled"
            return self._finish_slot(slot)
        if step == 0:
            h.first_token_at = now
            res.prefill_s = now - slot.started
        h.token_times.append(now)
        if s.seg_fallback:
            slot.states[step] = self.ring[slot.row, step % RING].clone()
            slot.states.pop(step - 3, None)
        if tok == self.seg_id:
            res.seg_states.append(self.ring[slot.row, step % RING].clone())
            res.seg_steps.append(step)
        res.ids.append(tok)
        if tok == self.tok.eos_id and not s.ignore_eos:
            res.stop_reason = "eos"
            return self._finish_slot(slot)
        delta = slot.det.push(tok)
        if delta:
            h._deltas.put(delta)
        if not s.ignore_eos and stop_string_seen(slot.det, s.stop_strings, delta):
            res.stop_reason = "stop_string"
            return self._finish_slot(slot)
        if len(res.ids) >= slot.limit:
            return self._finish_slot(slot)

    def _finish_slot(self, slot: _Slot) -> None:
        slot.finished = True
        res, s = slot.res, slot.handle.request.settings
        emitted = slot.det.text
        text = self.tok.decode(res.ids)
        for x in s.stop_strings:
            if x in text:
                text = text[: text.index(x)]
        if text.startswith(emitted) and len(text) > len(emitted):
            slot.handle._deltas.put(text[len(emitted):])
        res.text = text
        if s.seg_fallback and not res.seg_states:
            n = len(res.ids)
            res.fallback_state = slot.states.get(n - 2) if n >= 2 else slot.prev_prompt
        t_first = slot.handle.first_token_at
        res.decode_s = time.perf_counter() - t_first if t_first else 0.0

    def _retire(self) -> None:
        """Finished rows leave the batch (their cache is kept for prefix reuse)."""
        r = 0
        while r < self._n_active:
            slot = self._slots[r]
            if slot is None or not slot.finished:
                r += 1
                continue
            fed = slot.res.ids[:-1] if slot.res.ids else []
            self.cache.lengths[r] = slot.prompt_len + len(fed)
            self._row_keys[r] = (slot.keys + fed) if slot.keys else None
            self._row_used[r] = time.monotonic()
            self.active[r] = 0
            self.pos[r] = self.cache.scratch
            self.forced_len[r] = 0
            self._slots[r] = None
            last = self._n_active - 1
            self._move_row(r, last)
            self._n_active -= 1
            if slot.res.stop_reason == "cancelled":
                self._row_keys[last] = None
            slot.handle._finish(slot.res)
