"""`ChatController`: loads MedPLIB and answers chat questions on one worker thread.

Loading (the checkpoint, CLIP and SAM-Med2D folders from settings / environment) and every
model call run off the GUI thread on a single `TaskRunner` thread, so the one model is never
used by two threads at once. Answer text streams back through a queued signal, token by token;
``stop()`` cancels between two tokens and the `ChatSession` is then left as it was.

Sessions (one encoded slice plus its KV cache) are kept per conversation, a few at a time.
A conversation restored from a project, or one whose slice was shown with another window, is
rebuilt by replaying its finished turns with their saved answers (teacher-forced: no decoding).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from medplib_core.errors import CancelledError
from medplib_core.medplib.selection import MedplibSettings

from ..workers import TaskRunner

MAX_SESSIONS = 4  # each holds an image encoding and a KV cache (~0.3 GB on the real model)


def load_engine(cfg: MedplibSettings, progress: Callable[[int, int], None] | None = None):
    """Load the weights named by ``cfg`` and wrap them as a `MedplibEngine` (worker thread)."""
    from medplib_core.engines.medplib_engine import MedplibEngine
    from medplib_core.medplib.loader import load_medplib

    loaded = load_medplib(cfg.checkpoint, cfg.clip, cfg.sam, device=cfg.device, progress=progress)
    return MedplibEngine(loaded)


class _Relay(QObject):
    token = Signal(int, str)  # request id, new text (emitted on the worker thread)


class ChatController(QObject):
    """Owns the MedPLIB engine, its worker thread and the per-conversation sessions."""

    state_changed = Signal(str, str)  # state, message
    load_progress = Signal(int, int)
    token = Signal(str)  # streamed answer text, on the GUI thread
    answered = Signal(object, object)  # request, ChatTurn
    stopped = Signal(object, str)  # request, partial text
    failed = Signal(object, str)  # request, reason

    def __init__(self, settings, parent: QObject | None = None, chat_settings=None,
                 loader: Callable[..., Any] | None = None):
        super().__init__(parent)
        self.settings = settings
        self.chat_settings = chat_settings
        self.loader = loader or load_engine
        self.engine = None
        self.state, self.message = "idle", ""
        self.runner = TaskRunner(1, self, "medplib")
        self.request: dict | None = None  # the question being answered
        self.partial = ""
        self._task = None
        self._ids = 0
        self._generation = 0  # bumps when the scan changes: older sessions are dropped
        self._sessions: OrderedDict = OrderedDict()  # touched on the worker thread only
        self._after_load: Callable[[], None] | None = None
        self._relay = _Relay(self)
        self._relay.token.connect(self._on_token)
        self.refresh()

    # ----- configuration and loading ---------------------------------------------------------
    def config(self) -> MedplibSettings:
        return MedplibSettings.from_sources(self.settings)

    def availability(self) -> tuple[bool, str]:
        return self.config().availability()

    def refresh(self) -> None:
        """Re-read the configuration (after the setup dialog) unless a model is loaded."""
        if self.state in ("loading", "ready", "busy"):
            return
        ok, msg = self.availability()
        self._set_state("idle" if ok else "unconfigured", msg)

    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.state_changed.emit(state, message)

    @property
    def generation(self) -> int:
        """Bumps with every new scan; a late answer from an older one is dropped."""
        return self._generation

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def load(self, then: Callable[[], None] | None = None) -> None:
        """Load the model in the background; ``then`` runs once it is ready."""
        if self.engine is not None:
            if then:
                then()
            return
        self._after_load = then or self._after_load
        if self.state == "loading":
            return
        cfg = self.config()
        ok, msg = cfg.availability()
        if not ok:
            self._after_load = None
            self._set_state("unconfigured", msg)
            return
        self._set_state("loading", f"loading MedPLIB from {cfg.checkpoint}…")
        started = time.perf_counter()

        def done(engine):
            self.engine = engine
            inf = engine.info
            self._set_state("ready", f"{_short(inf.weights)} · {inf.device} · loaded in "
                                     f"{time.perf_counter() - started:.1f} s")
            then_, self._after_load = self._after_load, None
            if then_:
                then_()

        def failed(exc):
            self._after_load = None
            self._set_state("error", f"MedPLIB could not be loaded: {exc}")

        self.runner.submit(self.loader, cfg, name="load MedPLIB", pass_progress=True,
                           on_done=done, on_error=failed,
                           on_progress=lambda d, t: self.load_progress.emit(d, t))

    # ----- questions -------------------------------------------------------------------------
    def ask(self, key: tuple[str, int], image, signature: Any, history: list[tuple[str, list, str]],
            question: str, regions: list) -> dict | None:
        """Start answering ``question`` about ``image`` (the slice ``key`` as displayed).

        ``history``: the conversation's finished turns (question, model regions, answer), used
        to rebuild the session when needed; ``signature`` identifies the displayed image."""
        if self.engine is None or self.request is not None:
            return None
        self._ids += 1
        req = {"id": self._ids, "key": key, "generation": self._generation, "question": question,
               "started": time.perf_counter(), "replayed": 0}
        self.request, self.partial = req, ""
        self._set_state("busy", "answering…")
        engine, settings, sessions = self.engine, self.chat_settings, self._sessions
        skey = (self._generation, key)

        def work(cancel):
            entry = sessions.get(skey)
            if entry is None or entry[0] != signature or len(entry[1].turns) != len(history):
                sessions.pop(skey, None)
                session = engine.encode(image).chat(settings)
                for q, regs, answer in history:
                    if cancel():
                        raise CancelledError("stopped while restoring the conversation")
                    session.ask(q, regions=regs,
                                generation=replace(session.settings.generation, forced_answer=answer))
                req["replayed"] = len(history)
                entry = (signature, session)
                sessions[skey] = entry
                while len(sessions) > MAX_SESSIONS:
                    sessions.popitem(last=False)
            sessions.move_to_end(skey)
            return entry[1].ask(question, regions=regions, cancel=cancel,
                                on_token=lambda text: self._relay.token.emit(req["id"], text))

        def done(turn):
            self._finish(req)
            self.answered.emit(req, turn)

        def cancelled():
            self._finish(req)
            self.stopped.emit(req, self.partial)

        def failed(exc):
            self._finish(req)
            self.failed.emit(req, str(exc) or type(exc).__name__)

        self._task = self.runner.submit(work, name="chat", pass_cancel=True, on_done=done,
                                        on_error=failed, on_cancel=cancelled)
        return req

    def _on_token(self, rid: int, text: str) -> None:
        if self.request is not None and self.request["id"] == rid:
            self.partial += text
            self.token.emit(text)

    def _finish(self, req: dict) -> None:
        req["seconds"] = time.perf_counter() - req["started"]
        self.request, self._task = None, None
        if self.engine is not None:
            self._set_state("ready", self._ready_text())

    def _ready_text(self) -> str:
        inf = self.engine.info
        return f"{_short(inf.weights)} · {inf.device}"

    def stop(self) -> None:
        """Cancel the running answer (between two tokens)."""
        if self._task is not None:
            self._task.cancel()

    def forget(self, key: tuple[str, int] | None = None) -> None:
        """Drop sessions: one conversation's (cleared) or, with no key, all (a new scan)."""
        if key is None:
            self._generation += 1
            self.stop()
            self.runner.submit(self._sessions.clear, name="drop sessions")
        else:
            skey = (self._generation, key)
            self.runner.submit(lambda: self._sessions.pop(skey, None), name="drop session")

    def unload(self) -> None:
        """Drop the loaded model (new weights were configured); it reloads when next needed."""
        self.stop()
        self.engine = None
        self.forget()
        self.state = "idle"
        self.refresh()

    def shutdown(self) -> None:
        self.stop()
        self.runner.cancel_all()
        self.runner.wait(3000)


def _short(path: str) -> str:
    parts = str(path).rstrip("/").split("/")
    return parts[-1] if parts else str(path)
