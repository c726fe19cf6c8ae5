"""Chat on a session: questions and answers in the transcript, grounded masks as proposals.

`SessionChat` (``session.chat``) owns the transcript (`ChatBook`) and the question being
answered. Asking is split so a GUI can run the model on a worker thread::

    q = session.chat.ask(("axial", 40), "What is in <region>?", [RegionRef(RegionKind.BOX, box)])
    turn, replayed = cache.ask(engine, q, cancel=..., on_token=...)   # the model (any thread)
    session.chat.answered(q, turn, replayed=replayed)                 # back on the session's thread

``ask_now`` does the three in one call (scripts, the batch, the engine server).
`ConversationCache` keeps model sessions (one encoded slice plus its KV cache) per
conversation; a conversation restored from a project, or whose slice is now shown with another
window, is rebuilt by replaying its finished turns with their saved answers (teacher-forced).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..annotation import PromptKind, PromptStatus
from ..errors import CancelledError, MedplibError, PromptError
from ..project import PromptRecord
from ..slicing import ORIENTATIONS, slice_geometry
from .chat import AnswerState, ChatBook, Conversation, Message, Role, SliceKey
from .regions import RegionRef, RegionKind, grounding_prompt
from .targets import grounding_target

MAX_SESSIONS = 4  # each holds an image encoding and a KV cache (~0.3 GB on the real model)


class ChatBusyError(MedplibError):
    """A question was asked while another one is being answered."""


@dataclass
class Question:
    """A question being answered, with everything the model needs for it."""

    key: SliceKey
    conversation: Conversation
    question: Message
    answer: Message
    refs: list[RegionRef]
    regions: list[Any]  # the regions as `ChatSession.ask` takes them
    history: list[tuple[str, list[Any], str]]  # finished turns: question, regions, answer
    image: np.ndarray  # the slice as displayed (uint8)
    signature: tuple  # (window, shape): a cached model session of this slice fits when equal
    scan: int  # the session's scan serial when asked
    started: float = field(default_factory=time.perf_counter)


class SessionChat:
    """The chat of one `AnnotationSession` (its ``chat`` attribute)."""

    def __init__(self, session):
        self.session = session
        self.book = ChatBook()
        self.pending: Question | None = None

    # ----- transcript ------------------------------------------------------------------------
    def reset(self) -> None:
        """An empty transcript (a new scan); announces nothing."""
        self.book = ChatBook()
        self.pending = None

    def load(self, items: list[dict[str, Any]] | None) -> None:
        """Replace the transcript with a saved one (`Project.chat`)."""
        self.book = ChatBook.from_json(items)
        self.pending = None
        self.session.events.chat.emit()

    def to_json(self) -> list[dict[str, Any]]:
        return self.book.to_json()

    def conversation(self, key: SliceKey) -> Conversation | None:
        return self.book.convs.get(tuple(key))

    def note(self, key: SliceKey, text: str) -> None:
        """A hint in a conversation (shown, never saved)."""
        self.book.get(tuple(key)).messages.append(Message(Role.NOTE, text))
        self.session.events.chat.emit()

    def clear(self, key: SliceKey) -> None:
        """Forget one slice's conversation."""
        if self.pending is not None and self.pending.key == tuple(key):
            raise ChatBusyError("a question about this slice is being answered")
        if self.book.convs.pop(tuple(key), None) is not None:
            self.session.mark_changed()
        self.session.events.chat.emit()

    # ----- asking ----------------------------------------------------------------------------
    def ask(self, key: SliceKey, text: str, refs: list[RegionRef] = ()) -> Question:
        """Put a question about slice ``key`` into the transcript (its answer streaming).

        Mask regions become prompt records of that slice, so the chat can be saved and
        replayed. Raises `ChatBusyError` while another question is answered and `PromptError`
        when a region's mask is gone."""
        s = self.session
        if self.pending is not None:
            raise ChatBusyError("another question is being answered")
        if s.volume is None:
            raise PromptError("open a scan before asking about it")
        key = (str(key[0]), int(key[1]))
        conv = self.book.get(key)
        try:
            refs = [self.materialize(r, key) for r in refs]
            geom = slice_geometry(s.volume, *key) if key[0] in ORIENTATIONS else None
            for r in refs:  # described as the user sees them: voxel indices, like the cursor readout
                r.saved_text = r.describe(geom)
            records = s.records()
            regions = [r.model_region(records) for r in refs]
            history = [(q.text, [r.model_region(records) for r in q.regions], a.text)
                       for q, a in conv.turns()]
        except ValueError as exc:
            raise PromptError(str(exc)) from exc
        image = s.pixels(*key)
        answer = Message(Role.ASSISTANT, state=AnswerState.STREAMING)
        conv.messages += [Message(Role.USER, text, list(refs)), answer]
        self.pending = Question(key, conv, conv.messages[-2], answer, list(refs), regions, history,
                                image, (tuple(s.window), image.shape), s.scan_serial)
        s.events.chat.emit()
        return self.pending

    def stream(self, q: Question, text: str) -> bool:
        """Streamed answer text; False when ``q`` is no longer the question being answered."""
        if q is not self.pending:
            return False
        q.answer.text += text
        return True

    def answered(self, q: Question, turn, replayed: int = 0) -> list[PromptRecord]:
        """The model's answer (`ChatTurn`): its ``<SEG>`` masks become proposals (the last one
        shown), with the question and answer as provenance; returns their records."""
        if q is not self.pending or q.scan != self.session.scan_serial:
            return []
        s, a = self.session, q.answer
        a.text = turn.text
        a.info = {"engine": turn.provenance.get("engine"), "device": turn.provenance.get("device"),
                  "stop_reason": turn.stop_reason, "seconds": round(time.perf_counter() - q.started, 2),
                  "replayed_turns": int(replayed)}
        records = []
        target = grounding_target(q.question.text, turn.text)  # "Segment the liver": label "liver"
        for mask in turn.masks:
            if not mask.any():
                a.info["empty_mask"] = True
                continue
            rec = PromptRecord(id=s.new_prompt_id(), kind=PromptKind.GROUNDING, orientation=q.key[0],
                               index=q.key[1], prompt=grounding_prompt(turn.question, q.refs),
                               provenance=dict(turn.provenance, region_refs=[r.to_json() for r in q.refs],
                                               chat_slice={"orientation": q.key[0], "index": q.key[1]},
                                               **({"target": target} if target else {})),
                               mask=np.asarray(mask, dtype=bool))
            a.prompt_ids.append(rec.id)
            s.propose(rec)
            records.append(rec)
        self.finish(q, AnswerState.DONE)
        return records

    def finish(self, q: Question, state: AnswerState, error: str = "", text: str | None = None) -> None:
        """End ``q`` as done, stopped (``text``: what had streamed) or failed (``error``)."""
        if q is not self.pending:
            return
        if text is not None:
            q.answer.text = text
        q.answer.state = AnswerState(state)
        if error:
            q.answer.info["error"] = error
        self.pending = None
        self.session.mark_changed()
        self.session.events.chat.emit()

    def ask_now(self, engine, cache: "ConversationCache", key: SliceKey, text: str,
                refs: list[RegionRef] = (), on_token: Callable[[str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> Message:
        """Ask and answer in one call (blocking); returns the answer message."""
        q = self.ask(key, text, refs)

        def token(t: str) -> None:
            self.stream(q, t)
            if on_token is not None:
                on_token(t)

        try:
            turn, replayed = cache.ask(engine, q, cancel=cancel, on_token=token)
        except CancelledError:
            self.finish(q, AnswerState.STOPPED)
        except MedplibError as exc:
            self.finish(q, AnswerState.FAILED, error=str(exc))
        else:
            self.answered(q, turn, replayed)
        return q.answer

    # ----- regions and masks -----------------------------------------------------------------
    def materialize(self, ref: RegionRef, key: SliceKey) -> RegionRef:
        """Make sure a mask reference points at a 2D prompt record of slice ``key`` (created for
        a label snapshot or a 3D proposal)."""
        if ref.kind is not RegionKind.MASK or ref.mask is None:
            return ref
        s = self.session
        rec = s.records().get(ref.prompt_id) if ref.prompt_id is not None else None
        if rec is not None and rec.mask is not None and rec.mask.ndim == 2 and \
                (rec.orientation, rec.index) == tuple(key):
            return ref
        rec = PromptRecord(id=s.new_prompt_id(), kind=PromptKind.CHAT_REGION, orientation=key[0],
                           index=int(key[1]), prompt={"source": str(ref.source), "note": ref.note},
                           provenance={"engine": "user", "use": "region of a chat question",
                                       "from_prompt_id": ref.prompt_id},
                           mask=np.asarray(ref.mask, dtype=bool).copy(), status=PromptStatus.REFERENCE)
        s.add_record(rec)
        ref.prompt_id = rec.id
        return ref

    def show_again(self, rec: PromptRecord) -> None:
        """Make a chat mask the proposal again: the same record (listed anew) unless it was
        accepted, then a copy, so the accepted record keeps its status."""
        s = self.session
        p = s.proposal
        if p is not None and p.record.id == rec.id:
            return
        if rec.status is PromptStatus.ACCEPTED:
            rec = PromptRecord(id=s.new_prompt_id(), kind=rec.kind, orientation=rec.orientation,
                               index=rec.index, prompt=dict(rec.prompt), mask=rec.mask.copy(),
                               provenance=dict(rec.provenance, shown_again_from=rec.id))
        else:
            s.prompts.remove(rec)
            rec.status = PromptStatus.PROPOSED
        s.propose(rec)


@contextmanager
def model_turn(lock, cancel: Callable[[], bool] | None = None, on_wait: Callable[[], None] | None = None,
               poll: float = 0.1):
    """Hold a shared model's lock; while another call holds it, wait in short steps so that
    ``cancel()`` is honoured (a question never sits silently behind another model call)."""
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait()
        while not lock.acquire(timeout=poll):
            if cancel is not None and cancel():
                raise CancelledError("stopped while the model was busy with another task")
    try:
        yield
    finally:
        lock.release()


class ConversationCache:
    """Model chat sessions per conversation, a few at a time (LRU); use from one thread."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, settings=None):
        self.max_sessions = int(max_sessions)
        self.settings = settings  # `ChatSettings` of new sessions (None: the engine's)
        self._sessions: OrderedDict = OrderedDict()

    def ask(self, engine, q: Question, cancel: Callable[[], bool] | None = None,
            on_token: Callable[[str], None] | None = None, on_wait: Callable[[], None] | None = None):
        """Answer ``q`` with ``engine`` (a chat-capable engine such as `MedplibEngine`); returns
        ``(ChatTurn, turns replayed)``. Raises `CancelledError` when ``cancel()`` turns True,
        also while waiting for the engine's ``model_lock`` (another user of the shared model
        holds it: ``on_wait()`` is called once, so a GUI can say so)."""
        skey = (q.scan, q.key)
        replayed = 0
        signature = (q.signature, id(engine))  # a session of another model never answers
        with model_turn(engine.model_lock, cancel, on_wait):
            q.started = time.perf_counter()  # the answer's time counts from here (not the wait)
            entry = self._sessions.get(skey)
            if entry is None or entry[0] != signature or len(entry[1].turns) != len(q.history):
                self._sessions.pop(skey, None)
                chat = engine.encode(q.image).chat(self.settings)
                for text, regions, answer in q.history:
                    if cancel is not None and cancel():
                        raise CancelledError("stopped while restoring the conversation")
                    chat.ask(text, regions=regions,
                             generation=replace(chat.settings.generation, forced_answer=answer))
                replayed = len(q.history)
                entry = (signature, chat)
                self._sessions[skey] = entry
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            self._sessions.move_to_end(skey)
            turn = entry[1].ask(q.question.text, regions=q.regions, cancel=cancel, on_token=on_token)
        return turn, replayed

    def forget(self, key: SliceKey | None = None, scan: int | None = None) -> None:
        """Drop one conversation's session (``key`` of ``scan``), or all of them."""
        if key is None:
            self._sessions.clear()
        else:
            self._sessions.pop((scan, tuple(key)), None)
