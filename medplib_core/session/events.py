"""Named events a model emits and views subscribe to (the model/view split of napari).

A model owns an `Events` group whose members are fixed `Event`s; a view connects plain
callables (``session.events.voxels.connect(redraw)``) and the model emits after each change.
Nothing here knows a GUI toolkit: the Qt adapter connects each event to a signal's ``emit``.
Callbacks run synchronously on the thread that emitted; a callback that raises does not stop
the others (the error is re-raised once all have run).
"""

from __future__ import annotations

from typing import Any, Callable

Callback = Callable[..., Any]


class Event:
    """One named event: ``connect`` callables, ``emit`` calls them in connection order."""

    def __init__(self, name: str, doc: str = ""):
        self.name = name
        self.__doc__ = doc
        self._callbacks: list[Callback] = []

    def connect(self, callback: Callback) -> Callback:
        """Call ``callback(*args)`` on every emit; returns it (usable as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        error: BaseException | None = None
        for cb in list(self._callbacks):
            try:
                cb(*args)
            except Exception as exc:  # noqa: BLE001 - every subscriber hears the event
                error = error or exc
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"<Event {self.name}: {len(self._callbacks)} callbacks>"


class Events:
    """A fixed group of events, declared as ``{name: description}`` by the subclass."""

    NAMES: dict[str, str] = {}

    def __init__(self) -> None:
        for name, doc in self.NAMES.items():
            setattr(self, name, Event(name, doc))

    def __iter__(self):
        return (getattr(self, name) for name in self.NAMES)


class SessionEvents(Events):
    """What an `AnnotationSession` announces (arguments in brackets)."""

    NAMES = {
        "volume": "another scan was opened (or a project loaded)",
        "labels": "label definitions changed: name, colour, visibility, lock, policy, provenance",
        "voxels": "label voxels changed",
        "counts": "per-label voxel counts changed",
        "window": "the display window changed [centre, width]",
        "proposal": "the pending proposal came, changed or went",
        "active_label": "another label is active [value]",
        "history": "the undo history changed (texts, can undo/redo)",
        "prompts": "a prompt record was added or its status changed",
        "chat": "the chat transcript changed",
        "view_state": "a project brought back its view state [dict]",
        "changed": "anything worth saving changed (revision bumped)",
        "save_state": "a save target was saved, located or forgotten (see `SaveState`)",
        "focus": "the slice the user works on changed [orientation, index]",
        "measurements": "a ruler or ROI was added, changed or removed (or the list restored)",
    }
