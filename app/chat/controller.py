"""`ChatController`: loads MedPLIB and answers the session's chat questions on one worker thread.

Where the model runs is the core's `EngineLocation` (Settings ▸ Engine…): by default in a
separate local engine process (`LocalEngineProcess`, loopback with a random token), so a crash
or an out-of-memory kill of the model never takes the window down; or on an engine server; or
in this process (the core's one loader `medplib_engine_for`). Every model call runs off the GUI
thread on a single `TaskRunner` thread. Answer text streams back through a queued signal, token
by token; ``stop()`` cancels between two tokens and the model's conversation is then left as it
was. The per-conversation model sessions and their replay are the core's `ConversationCache`.

When the engine process dies (or the server connection drops) the state becomes ``LOST``
("engine connection lost"): the session and every edit stay as they are, a local process is
started again at once, and the next question rebuilds its conversation from the transcript.

New weights chosen in Settings apply to the next question even when they were chosen while a
model was loading or answering: a model whose configuration is no longer the settings' is
dropped before the next question (and a load that finishes for old settings loads again).
While another user of the shared model (segmentation with MedPLIB) holds its lock, the state
says "waiting" and Stop works at once.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from medplib_core.engines.remote_http import EngineConnectionError
from medplib_core.medplib.selection import MedplibSettings
from medplib_core.server.location import EngineLocation, medplib_engine
from medplib_core.session import ConversationCache, Question
from medplib_core.text_enum import TextEnum

from ..workers import TaskRunner


class ChatState(TextEnum):
    UNCONFIGURED = "unconfigured"  # no usable weights
    IDLE = "idle"  # weights found, model not loaded
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"  # answering
    ERROR = "error"  # the model could not be loaded
    LOST = "connection lost"  # the engine process or server went away; reconnecting


class _Relay(QObject):
    token = Signal(object, str)  # question, new text (emitted on the worker thread)
    waiting = Signal(object)  # question: the shared model is busy with another call


def config_key(cfg: MedplibSettings) -> tuple:
    """What identifies the loaded weights (`medplib_engine_for` shares an engine per key)."""
    return (cfg.checkpoint, cfg.clip, cfg.sam, cfg.device)


class ChatController(QObject):
    """Owns the MedPLIB engine handle, its worker thread and the conversation cache."""

    state_changed = Signal(str, str)  # state, message
    load_progress = Signal(int, int)
    token = Signal(object, str)  # question, streamed answer text (GUI thread)
    answered = Signal(object, object, int)  # question, ChatTurn, turns replayed
    stopped = Signal(object)  # question
    failed = Signal(object, str)  # question, reason

    def __init__(self, settings, parent: QObject | None = None, chat_settings=None,
                 loader: Callable[..., Any] | None = None):
        """``loader(cfg, progress=...) -> engine`` replaces the engine location's choice."""
        super().__init__(parent)
        self.settings = settings
        self.loader = loader
        self.engine = None
        self.engine_key: tuple | None = None  # the configuration the loaded engine came from
        self.process = None  # the local engine process MedPLIB runs in, if it does
        self._watch = QTimer(self)  # notices a dead engine process even while nobody asks
        self._watch.setInterval(1000)
        self._watch.timeout.connect(self._check_process)
        self.state, self.message = ChatState.IDLE, ""
        self.runner = TaskRunner(1, self, "medplib")
        self.cache = ConversationCache(settings=chat_settings)  # touched on the worker thread only
        self.question: Question | None = None  # the question being answered
        self._task = None
        self._after_load: Callable[[], None] | None = None
        self._relay = _Relay(self)
        self._relay.token.connect(self.token.emit)
        self._relay.waiting.connect(lambda q: self._set_state(
            ChatState.BUSY, "waiting: the model is busy with another task (Stop cancels)") if q is self.question else None)
        self.refresh()

    # ----- configuration and loading ---------------------------------------------------------
    def config(self) -> MedplibSettings:
        return MedplibSettings.from_sources(self.settings)

    def location(self) -> EngineLocation:
        return EngineLocation.from_settings(self.settings)

    def availability(self) -> tuple[bool, str]:
        loc = self.location()
        if loc.remote and self.loader is None:
            probs = loc.problems()
            return (False, "; ".join(probs)) if probs else (True, f"MedPLIB {loc.describe()}")
        return self.config().availability()

    def refresh(self) -> None:
        """Re-read the configuration (after the setup dialog) unless a model is loaded."""
        if self.state in (ChatState.LOADING, ChatState.READY, ChatState.BUSY, ChatState.LOST):
            return
        ok, msg = self.availability()
        self._set_state(ChatState.IDLE if ok else ChatState.UNCONFIGURED, msg)

    def _set_state(self, state: ChatState, message: str = "") -> None:
        self.state, self.message = ChatState(state), message
        self.state_changed.emit(str(state), message)

    @property
    def ready(self) -> bool:
        return self.engine is not None

    @property
    def stale(self) -> bool:
        """The loaded model is not the one the settings name any more."""
        return self.engine is not None and self.engine_key != config_key(self.config())

    def load(self, then: Callable[[], None] | None = None) -> None:
        """Load the model in the background (again, if the settings changed since); ``then``
        runs once it is ready."""
        if self.state is ChatState.LOST and self.process is not None:  # restarting: then
            self._after_load = then or self._after_load
            return
        if self.stale and self.question is None:
            self.unload()
        if self.engine is not None:
            if then:
                then()
            return
        self._after_load = then or self._after_load
        if self.state is ChatState.LOADING:
            return
        cfg, loc = self.config(), self.location()
        ok, msg = self.availability()
        if not ok:
            self._after_load = None
            self._set_state(ChatState.UNCONFIGURED, msg)
            return
        doing = (f"connecting to {loc.url}…" if loc.remote and self.loader is None else
                 f"starting the MedPLIB engine process ({_short(cfg.checkpoint)})…"
                 if loc.medplib_process and self.loader is None else f"loading MedPLIB from {cfg.checkpoint}…")
        self._set_state(ChatState.LOADING, doing)
        started = time.perf_counter()
        key = config_key(cfg)

        def work(progress, cancel):
            if self.loader is not None:
                return self.loader(cfg, progress=progress), None
            return medplib_engine(loc, cfg, progress, cancel)

        def done(result):
            if config_key(self.config()) != key:  # other weights were chosen meanwhile: load those
                engine, proc = result
                if proc is not None:
                    proc.stop()
                self._set_state(ChatState.IDLE, "the settings changed while loading")
                self.load()
                return
            (self.engine, self.process), self.engine_key = result, key
            if self.process is not None:
                self._watch.start()
            self._set_state(ChatState.READY, f"{self._ready_text()} · ready in "
                                             f"{time.perf_counter() - started:.1f} s")
            then_, self._after_load = self._after_load, None
            if then_:
                then_()

        def failed(exc):
            self._after_load = None
            self._set_state(ChatState.ERROR, f"MedPLIB could not be loaded: {exc}")

        self.runner.submit(work, name="load MedPLIB", pass_progress=True, pass_cancel=True,
                           on_done=done, on_error=failed,
                           on_progress=lambda d, t: self.load_progress.emit(d, t))

    def _ready_text(self) -> str:
        inf = self.engine.info
        where = " · separate engine process" if self.process is not None else ""
        return f"{_short(inf.weights)} · {inf.device}{where}"

    # ----- a lost engine ----------------------------------------------------------------------
    def _check_process(self) -> None:
        if self.process is not None and not self.process.alive and self.state is not ChatState.LOST:
            self._lost("the engine process stopped")

    def _lost(self, why: str) -> None:
        """The engine went away: say so, keep everything, start a local process again."""
        if self.state is ChatState.LOST:
            return  # already restarting
        proc = self.process
        then = "restarting the engine process" if proc is not None else "it reconnects when the server is back"
        self._set_state(ChatState.LOST, f"Engine connection lost ({why}) — {then}. Your edits are kept.")
        if proc is None:  # a server: the next question reconnects once it is back
            return

        def done(engine):
            if engine is not self.engine:  # a new port, a new client: rebuild the conversations
                self.engine = engine
                self.cache.forget()
            self._set_state(ChatState.READY, f"{self._ready_text()} · reconnected")
            then_, self._after_load = self._after_load, None
            if then_:
                then_()

        def failed(exc):
            self._after_load = None
            self._set_state(ChatState.ERROR, f"the MedPLIB engine process could not be restarted: {exc}")

        self.runner.submit(proc.restart, name="restart the engine process", pass_cancel=True,
                           on_done=done, on_error=failed)

    # ----- questions -------------------------------------------------------------------------
    def ask(self, q: Question) -> bool:
        """Start answering ``q`` (from ``session.chat.ask``); False when the model is busy or
        not loaded."""
        if self.engine is None or self.question is not None:
            return False
        self.question = q
        self._set_state(ChatState.BUSY, "answering…")
        engine, cache = self.engine, self.cache

        def work(cancel):
            return cache.ask(engine, q, cancel=cancel, on_token=lambda text: self._relay.token.emit(q, text),
                             on_wait=lambda: self._relay.waiting.emit(q))

        def done(result):
            self._finish()
            self.answered.emit(q, *result)

        def cancelled():
            self._finish()
            self.stopped.emit(q)

        def failed(exc):
            self._finish()
            self.failed.emit(q, str(exc) or type(exc).__name__)
            if isinstance(exc, EngineConnectionError):
                self._lost("while answering" if self.process is None or not self.process.alive
                           else "the connection dropped")

        self._task = self.runner.submit(work, name="chat", pass_cancel=True, on_done=done,
                                        on_error=failed, on_cancel=cancelled)
        return True

    def _finish(self) -> None:
        self.question, self._task = None, None
        if self.stale:  # other weights were chosen while answering: the next question loads them
            self.unload()
            return
        if self.engine is not None and self.state is not ChatState.LOST:
            self._set_state(ChatState.READY, self._ready_text())

    def stop(self) -> None:
        """Cancel the running answer (between two tokens)."""
        if self._task is not None:
            self._task.cancel()

    def forget(self, key=None, scan: int | None = None) -> None:
        """Drop model sessions: one conversation's (cleared) or, with no key, all (a new scan)."""
        if key is None:
            self.stop()
        self.runner.submit(self.cache.forget, key, scan, name="drop sessions")

    def unload(self) -> None:
        """Drop the model handle (new weights or another engine location were configured); it
        reloads when next needed."""
        self.stop()
        self._stop_process()
        self.engine, self.engine_key = None, None
        self.forget()
        self.state = ChatState.IDLE
        self.refresh()

    def _stop_process(self) -> None:
        self._watch.stop()
        proc, self.process = self.process, None
        if proc is not None:
            proc.stop()

    def shutdown(self) -> None:
        self.stop()
        self.runner.cancel_all()
        self.runner.wait(3000)
        self._stop_process()


def _short(path: str) -> str:
    parts = str(path).rstrip("/").split("/")
    return parts[-1] if parts else str(path)
