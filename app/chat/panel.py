"""`ChatPanel`: the MedPLIB chat dock — one conversation per slice, streamed answers, regions.

The transcript, the question being answered and the grounded proposals are the session's
(``session.chat``, a `SessionChat`); the panel shows the conversation of the active view's slice
(scrolling switches conversations) and asks. ``<region>`` in a question is filled by the
regions attached with "Use as <region>", or else by the region touched last on the slice (drawn
box / outline / points, the proposal, or the active label's mask — which is how a corrected mask
becomes the region of the next question). A ``<SEG>`` answer's mask becomes the session's
proposal (Enter accepts it), with the question and answer as provenance.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer

from medplib_core.errors import MedplibError
from medplib_core.session import AnswerState, RegionRef
from medplib_core.slicing import n_slices, slice_geometry

from ..medplib_setup import MedplibSetupDialog, ensure_notice, show_notice
from .controller import ChatController, ChatState
from .regions import RegionTracker
from .rendering import REGION_RE, region_chip, render_html
from .widgets import ChatPanelUI


class ChatPanel(ChatPanelUI):
    """The chat dock's widget; see the module docstring."""

    def __init__(self, window, controller: ChatController | None = None):
        super().__init__()
        self.win, self.doc, self.session = window, window.doc, window.session
        self.settings = window.settings
        self.chat = self.session.chat  # the session's chat: transcript, question being answered
        self.ctl = controller or ChatController(window.settings, self)
        self.tracker = RegionTracker(self.doc, window.viewer.views, self)
        self.key: tuple[str, int] | None = None
        self.attached: list[RegionRef] = []
        self.candidates: list[RegionRef] = []
        self.tokens_received = 0
        self.notice_box = self.setup_dialog = None
        self._build()
        self._connect()
        self._on_state(self.ctl.state, self.ctl.message)
        self._sync_slice()

    # ----- construction ----------------------------------------------------------------------
    def _connect(self) -> None:
        c, d = self.ctl, self.doc
        self._sync_timer = QTimer(self)  # coalesces the slice signals into one update
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(0)
        self._sync_timer.timeout.connect(self._sync_slice)
        c.state_changed.connect(lambda state, message: self._on_state(ChatState(state), message))
        c.load_progress.connect(self._on_progress)
        c.token.connect(self._on_token)
        c.answered.connect(self._on_answer)
        c.stopped.connect(self._on_stopped)
        c.failed.connect(self._on_failed)
        self.load_button.clicked.connect(lambda: self.ctl.load())
        self.setup_button.clicked.connect(self.open_setup)
        self.clear_button.clicked.connect(self.clear_conversation)
        self.conv_combo.activated.connect(lambda i: self.go_to(tuple(self.conv_combo.itemData(i))))
        self.transcript.anchorClicked.connect(self._on_anchor)
        self.use_region.clicked.connect(self.use_selected_region)
        self.unattach.clicked.connect(self._detach)
        self.input.submitted.connect(self.send)
        self.input.escape.connect(self.stop)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.footer.linkActivated.connect(lambda _: show_notice(self))
        self.tracker.changed.connect(self._refresh_regions)
        d.volume_changed.connect(self._on_volume)
        d.chat_changed.connect(self._on_chat)
        d.proposal_changed.connect(self._rerender)
        d.focus_changed.connect(lambda *_: self._sync_timer.start())  # the slice the user works on

    # ----- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.chat.pending is not None

    def _on_state(self, state: ChatState, message: str) -> None:
        texts = {
            ChatState.UNCONFIGURED: "MedPLIB is not set up.",
            ChatState.IDLE: f"MedPLIB: {html.escape(_name(self.ctl.config().checkpoint))} — loads on the first question",
            ChatState.LOADING: "Loading MedPLIB…",
            ChatState.READY: f"MedPLIB ready · {html.escape(message)}",
            ChatState.BUSY: ("Waiting: the model is busy with another task (Stop cancels)"
                             if message.startswith("waiting") else "Answering… (Stop or Esc cancels)"),
            ChatState.ERROR: f'<span style="color:#b00020">⚠ {html.escape(message)}</span>',
            ChatState.LOST: f'<span style="color:#b00020"><b>⚠ {html.escape(message)}</b></span>',
        }
        self.state_label.setText(texts.get(state, html.escape(message)))
        self.state_label.setToolTip(message)
        self.load_button.setVisible(state is ChatState.IDLE)
        self.setup_button.setVisible(state in (ChatState.UNCONFIGURED, ChatState.IDLE, ChatState.ERROR))
        self.progress.setVisible(state is ChatState.LOADING)
        if state is ChatState.LOADING:
            self.progress.setRange(0, 0)
        q = self.chat.pending
        if state in (ChatState.UNCONFIGURED, ChatState.ERROR) and q is not None and self.ctl.question is not q:
            self.chat.finish(q, AnswerState.FAILED, error=message.split("\n")[0])  # never reached the model
        self._update_buttons()
        if not self.busy:
            self._render()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _update_buttons(self) -> None:
        usable = self.ctl.state is not ChatState.UNCONFIGURED and self.session.volume is not None
        self.send_button.setEnabled(usable and not self.busy)
        self.stop_button.setEnabled(self.busy)
        self.clear_button.setEnabled(not self.busy and self.key is not None)
        self.use_region.setEnabled(bool(self.candidates))
        self.attached_label.setVisible(bool(self.attached))
        self.unattach.setVisible(bool(self.attached))
        self.attached_label.setText("Attached: " + " ".join(
            region_chip(n + 1, r) for n, r in enumerate(self.attached)))

    def open_setup(self) -> MedplibSetupDialog:
        dlg = MedplibSetupDialog(self.settings, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(self._setup_saved)
        dlg.finished.connect(lambda *_: self.win.activateWindow())
        self.setup_dialog = dlg
        dlg.open()
        return dlg

    def open_engine_setup(self):
        """Settings ▸ Engine…: on this computer or on a server; saving moves both engines."""
        from ..engine_setup import EngineSetupDialog

        from medplib_core.server.location import EngineLocation

        dlg = EngineSetupDialog(self.settings, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        before = EngineLocation.from_settings(self.settings)
        dlg.accepted.connect(lambda: self._engine_moved(before))
        dlg.finished.connect(lambda *_: self.win.activateWindow())
        self.setup_dialog = dlg
        dlg.open()
        return dlg

    def _engine_moved(self, before) -> None:
        from medplib_core.server.location import EngineLocation

        now = EngineLocation.from_settings(self.settings)
        if (now.where, now.url, now.token, now.medplib_process) != \
                (before.where, before.url, before.token, before.medplib_process) and not self.busy:
            self.ctl.unload()
        if (now.where, now.url, now.token) != (before.where, before.url, before.token):
            self.win.engine.reload()  # LiteMedSAM moves too

    def _setup_saved(self) -> None:
        if self.ctl.ready and not self.busy:
            self.ctl.unload()
        self.ctl.refresh()

    # ----- slices and conversations ------------------------------------------------------------
    def _current_key(self) -> tuple[str, int] | None:
        """The slice the user works on (the session's focus: the view clicked, drawn on,
        scrolled or focused last)."""
        if self.session.volume is None or self.session.focus is None:
            return None
        return self.session.focus

    def _sync_slice(self) -> None:
        key = self._current_key()
        if key != self.key:
            self.key = key
            self.attached.clear()
            self._render()
        self._refresh_conversations()
        self._refresh_regions()
        self.about_label.setText(f"Questions are about <b>{self._title(key)}</b>" if key else "")

    def _title(self, key: tuple[str, int]) -> str:
        vol = self.session.volume
        if vol is None:
            return ""
        if vol.is_2d:
            return "this image"
        return f"{key[0].capitalize()} {key[1] + 1} / {n_slices(vol, key[0])}"

    def _refresh_conversations(self) -> None:
        keys = [c.key for c in self.chat.book.non_empty()]
        if self.key is not None and self.key not in keys:
            keys.append(self.key)
        self.conv_combo.blockSignals(True)
        self.conv_combo.clear()
        for k in keys:
            conv = self.chat.conversation(k)
            n = conv.questions() if conv is not None else 0
            self.conv_combo.addItem(f"{self._title(k)} · {n} question{'s' if n != 1 else ''}", k)
        if self.key in keys:
            self.conv_combo.setCurrentIndex(keys.index(self.key))
        self.conv_combo.blockSignals(False)
        self._update_buttons()

    def go_to(self, key: tuple[str, int]) -> None:
        """Show slice ``key`` in the active view (and so its conversation)."""
        viewer = self.win.viewer
        viewer.set_orientation(key[0])
        view = viewer.active
        view.set_index(int(key[1]))
        self.session.set_focus(view.orientation, view.index)
        self._sync_slice()

    def _on_volume(self) -> None:
        self.ctl.forget()
        self.key = None
        self._sync_slice()

    def _on_chat(self) -> None:
        """The session's transcript changed (a question, an answer, a loaded project)."""
        self._refresh_conversations()
        self._render()
        self._update_buttons()

    def clear_conversation(self) -> None:
        if self.key is None or self.busy:
            return
        self.chat.clear(self.key)
        self.ctl.forget(self.key, self.session.scan_serial)

    # ----- regions ---------------------------------------------------------------------------
    def _refresh_regions(self) -> None:
        self.candidates = self.tracker.candidates(*self.key) if self.key else []
        self.region_combo.clear()
        vol, key = self.session.volume, self.key
        geom = slice_geometry(vol, *key) if key and vol is not None and 0 <= key[1] < n_slices(vol, key[0]) else None
        for n, ref in enumerate(self.candidates):
            text = ref.describe(geom)  # voxel indices, as the status bar's readout
            self.region_combo.addItem(text)
            self.region_combo.setItemData(n, text, Qt.ItemDataRole.ToolTipRole)
        if not self.candidates:
            self.region_combo.addItem("none — draw on the slice")
            self.region_combo.setItemData(0, "Draw a box, outline or points, or accept a mask",
                                          Qt.ItemDataRole.ToolTipRole)
        self.region_combo.setCurrentIndex(0)
        self._update_buttons()

    def selected_region(self) -> RegionRef | None:
        i = self.region_combo.currentIndex()
        return self.candidates[i] if 0 <= i < len(self.candidates) else None

    def use_selected_region(self) -> None:
        ref = self.selected_region()
        if ref is None:
            return
        ref.saved_text = self.region_combo.currentText()  # as listed: voxel indices
        self.attached.append(ref)
        text = self.input.toPlainText()
        if len(REGION_RE.findall(text)) < len(self.attached):
            cur = self.input.textCursor()
            before = text[:cur.position()]
            cur.insertText(("" if not before or before.endswith(" ") else " ") + "<region> ")
        self._update_buttons()
        self.input.setFocus()

    def _detach(self) -> None:
        self.attached.clear()
        self._update_buttons()

    # ----- asking ----------------------------------------------------------------------------
    def send(self) -> None:
        """Ask the question in the input box (after the one-time notice)."""
        text = self.input.toPlainText().strip()
        if not text or self.busy or self.key is None:
            return
        if self.ctl.state is ChatState.UNCONFIGURED:
            self.open_setup()
            return
        refs = list(self.attached)
        marks = len(REGION_RE.findall(text))
        if marks > len(refs):
            sel = self.selected_region()
            if marks - len(refs) != 1 or sel is None:
                self._note(f"The question has {marks} <region> marks but {len(refs) + bool(sel)} "
                           "region(s) to fill them: draw a region, then press “Use as <region>”.")
                return
            refs.append(sel)
        key = self.key
        self.notice_box = ensure_notice(self, self.settings, lambda: self._ask(text, refs, key))

    def _ask(self, text: str, refs: list[RegionRef], key: tuple[str, int]) -> None:
        self.notice_box = None
        if self.busy or self.session.volume is None or key != self.key:
            return
        try:
            q = self.chat.ask(key, text, refs)
        except MedplibError as exc:
            self._note(str(exc))
            return
        self.input.clear()
        self.attached.clear()
        self._update_buttons()

        def start():
            if self.chat.pending is q and not self.ctl.ask(q):  # an older answer is still stopping
                self.chat.finish(q, AnswerState.FAILED, error="the model was busy; ask again")

        self.ctl.load(then=start)

    def stop(self) -> None:
        q = self.chat.pending
        if q is None:
            return
        if self.ctl.question is not q:  # still loading the model: forget the question
            self.chat.finish(q, AnswerState.STOPPED)
        else:
            self.ctl.stop()

    def _on_token(self, q, text: str) -> None:
        if self.chat.stream(q, text):
            self.tokens_received += 1
            if q.key == self.key:
                self.transcript.append(text)

    def _on_answer(self, q, turn, replayed: int) -> None:
        self.chat.answered(q, turn, replayed)

    def _on_stopped(self, q) -> None:
        self.chat.finish(q, AnswerState.STOPPED)

    def _on_failed(self, q, reason: str) -> None:
        self.chat.finish(q, AnswerState.FAILED, error=reason)

    def _note(self, text: str) -> None:
        if self.key is not None:
            self.chat.note(self.key, text)

    # ----- rendering -------------------------------------------------------------------------
    def _rerender(self) -> None:
        """A proposal came or went: refresh the mask links (only they depend on it)."""
        conv = self.chat.conversation(self.key) if self.key else None
        if not self.busy and conv is not None and any(m.prompt_ids for m in conv.messages):
            self._render()

    def _render(self) -> None:
        conv = self.chat.conversation(self.key) if self.key else None
        if self.ctl.state is ChatState.UNCONFIGURED:  # one line; the setup dialog explains the rest
            empty = "Chat needs the MedPLIB weights: “Set up MedPLIB…” says where they go."
        elif self.ctl.state is ChatState.ERROR:
            empty = self.ctl.message
        elif self.session.volume is None or self.key is None:
            empty = "Open a scan to chat about it."
        else:
            empty = (f"No questions about {self._title(self.key)} yet. Try “What can you see in this "
                     "image?”, draw a box and ask “What is in <region>?”, or “Segment the liver”.")
        streaming = self.chat.pending is not None and conv is self.chat.pending.conversation
        current = self.session.proposal.record.id if self.session.proposal is not None else None
        self.transcript.show_html(render_html(conv, self.session.records(), empty, current), streaming)

    def _on_anchor(self, url) -> None:
        if url.scheme() != "mask":
            return
        rec = self.session.records().get(int(url.path() or 0))
        if rec is None or rec.mask is None:
            return
        self.go_to((rec.orientation, rec.index))
        self.chat.show_again(rec)

    def shutdown(self) -> None:
        self.ctl.shutdown()


def _name(path) -> str:
    return Path(str(path or "")).name
