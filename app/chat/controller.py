"""`ChatController`: loads MedPLIB and answers the session's chat questions on one worker thread.

The model comes from the core's one loader (`medplib_engine_for`: segmentation with MedPLIB
gets the same engine, never a second copy) and every model call runs off the GUI thread on a
single `TaskRunner` thread. Answer text streams back through a queued signal, token by token;
``stop()`` cancels between two tokens and the model's conversation is then left as it was.
The per-conversation model sessions and their replay are the core's `ConversationCache`.

New weights chosen in Settings apply to the next question even when they were chosen while a
model was loading or answering: a model whose configuration is no longer the settings' is
dropped before the next question (and a load that finishes for old settings loads again).
While another user of the shared model (segmentation with MedPLIB) holds its lock, the state
says "waiting" and Stop works at once.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from medplib_core.engines.medplib_engine import medplib_engine_for
from medplib_core.medplib.selection import MedplibSettings
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
        super().__init__(parent)
        self.settings = settings
        self.loader = loader or medplib_engine_for
        self.engine = None
        self.engine_key: tuple | None = None  # the configuration the loaded engine came from
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

    def refresh(self) -> None:
        """Re-read the configuration (after the setup dialog) unless a model is loaded."""
        if self.state in (ChatState.LOADING, ChatState.READY, ChatState.BUSY):
            return
        ok, msg = self.config().availability()
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
        if self.stale and self.question is None:
            self.unload()
        if self.engine is not None:
            if then:
                then()
            return
        self._after_load = then or self._after_load
        if self.state is ChatState.LOADING:
            return
        cfg = self.config()
        ok, msg = cfg.availability()
        if not ok:
            self._after_load = None
            self._set_state(ChatState.UNCONFIGURED, msg)
            return
        self._set_state(ChatState.LOADING, f"loading MedPLIB from {cfg.checkpoint}…")
        started = time.perf_counter()
        key = config_key(cfg)

        def done(engine):
            if config_key(self.config()) != key:  # other weights were chosen meanwhile: load those
                self._set_state(ChatState.IDLE, "the settings changed while loading")
                self.load()
                return
            self.engine, self.engine_key = engine, key
            inf = engine.info
            self._set_state(ChatState.READY, f"{_short(inf.weights)} · {inf.device} · loaded in "
                                             f"{time.perf_counter() - started:.1f} s")
            then_, self._after_load = self._after_load, None
            if then_:
                then_()

        def failed(exc):
            self._after_load = None
            self._set_state(ChatState.ERROR, f"MedPLIB could not be loaded: {exc}")

        self.runner.submit(self.loader, cfg, name="load MedPLIB", pass_progress=True,
                           on_done=done, on_error=failed,
                           on_progress=lambda d, t: self.load_progress.emit(d, t))

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

        self._task = self.runner.submit(work, name="chat", pass_cancel=True, on_done=done,
                                        on_error=failed, on_cancel=cancelled)
        return True

    def _finish(self) -> None:
        self.question, self._task = None, None
        if self.stale:  # other weights were chosen while answering: the next question loads them
            self.unload()
            return
        if self.engine is not None:
            inf = self.engine.info
            self._set_state(ChatState.READY, f"{_short(inf.weights)} · {inf.device}")

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
        """Drop the model handle (new weights were configured); it reloads when next needed."""
        self.stop()
        self.engine, self.engine_key = None, None
        self.forget()
        self.state = ChatState.IDLE
        self.refresh()

    def shutdown(self) -> None:
        self.stop()
        self.runner.cancel_all()
        self.runner.wait(3000)


def _short(path: str) -> str:
    parts = str(path).rstrip("/").split("/")
    return parts[-1] if parts else str(path)
