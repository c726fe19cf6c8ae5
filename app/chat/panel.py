"""`ChatPanel`: the MedPLIB chat dock — one conversation per slice, streamed answers, regions.

The conversation shown is the active view's slice; scrolling switches conversations (all are
kept, and saved with the project through ``Document.chat``). ``<region>`` in a question is
filled by the regions attached with "Use as <region>", or else by the region touched last on
the slice (drawn box / outline / points, the proposal, or the active label's mask — which is how a
corrected mask becomes the region of the next question). A ``<SEG>`` answer's mask becomes
the document's proposal (Enter accepts it), with the question and answer as provenance.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer

from medplib_core.project import PromptRecord
from medplib_core.slicing import n_slices, slice_geometry

from ..medplib_setup import MedplibSetupDialog, ensure_notice, show_notice
from .controller import ChatController
from .regions import RegionRef, RegionTracker, find_records, grounding_prompt, materialize, show_again
from .transcript import REGION_RE, ChatBook, Message, region_chip, render_html
from .widgets import ChatPanelUI


class ChatPanel(ChatPanelUI):
    """The chat dock's widget; see the module docstring."""

    def __init__(self, window, controller: ChatController | None = None):
        super().__init__()
        self.win, self.doc = window, window.doc
        self.settings = window.settings
        self.ctl = controller or ChatController(window.settings, self)
        self.book = ChatBook()
        self.tracker = RegionTracker(self.doc, window.viewer.views, self)
        self.key: tuple[str, int] | None = None
        self.attached: list[RegionRef] = []
        self.candidates: list[RegionRef] = []
        self.active: dict | None = None  # the question being answered: req, conv, answer, refs, key
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
        c.state_changed.connect(self._on_state)
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
        d.proposal_changed.connect(self._rerender)
        v = self.win.viewer
        v.active_changed.connect(lambda _: self._sync_timer.start())
        for view in v.views:
            view.index_changed.connect(lambda *_: self._sync_timer.start())
            view.combo.currentIndexChanged.connect(lambda *_: self._sync_timer.start())

    # ----- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.active is not None

    def _on_state(self, state: str, message: str) -> None:
        texts = {
            "unconfigured": "<b>MedPLIB is not set up.</b> Segmentation keeps using LiteMedSAM.",
            "idle": f"MedPLIB: {html.escape(_name(self.ctl.config().checkpoint))} — loads on the first question",
            "loading": "Loading MedPLIB…",
            "ready": f"MedPLIB ready · {html.escape(message)}",
            "busy": "Answering… (Stop or Esc cancels)",
            "error": f'<span style="color:#b00020">⚠ {html.escape(message)}</span>',
        }
        self.state_label.setText(texts.get(state, html.escape(message)))
        self.state_label.setToolTip(message)
        self.load_button.setVisible(state == "idle")
        self.setup_button.setVisible(state in ("unconfigured", "idle", "error"))
        self.progress.setVisible(state == "loading")
        if state == "loading":
            self.progress.setRange(0, 0)
        if state in ("unconfigured", "error") and self.active is not None and self.active.get("req") is None:
            self._end_answer("failed", error=message.split("\n")[0])
        self._update_buttons()
        if not self.busy:
            self._render()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _update_buttons(self) -> None:
        usable = self.ctl.state not in ("unconfigured",) and self.doc.volume is not None
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

    def _setup_saved(self) -> None:
        if self.ctl.ready and not self.busy:
            self.ctl.unload()
        self.ctl.refresh()

    # ----- slices and conversations ------------------------------------------------------------
    def _current_key(self) -> tuple[str, int] | None:
        if self.doc.volume is None:
            return None
        view = self.win.viewer.active
        return (view.orientation, view.index)

    def _sync_slice(self) -> None:
        key = self._current_key()
        if key != self.key:
            self.key = key
            self.attached.clear()
            self._render()
        self._refresh_conversations()
        self._refresh_regions()

    def _title(self, key: tuple[str, int]) -> str:
        vol = self.doc.volume
        if vol is None:
            return ""
        if vol.is_2d:
            return "this image"
        return f"{key[0].capitalize()} {key[1] + 1} / {n_slices(vol, key[0])}"

    def _refresh_conversations(self) -> None:
        keys = [c.key for c in self.book.non_empty()]
        if self.key is not None and self.key not in keys:
            keys.append(self.key)
        self.conv_combo.blockSignals(True)
        self.conv_combo.clear()
        for k in keys:
            n = len([m for m in self.book.get(k).messages if m.role == "user"]) if k in self.book.convs else 0
            self.conv_combo.addItem(f"{self._title(k)} · {n} question{'s' if n != 1 else ''}", k)
        if self.key in keys:
            self.conv_combo.setCurrentIndex(keys.index(self.key))
        self.conv_combo.blockSignals(False)
        self._update_buttons()

    def go_to(self, key: tuple[str, int]) -> None:
        """Show slice ``key`` in the active view (and so its conversation)."""
        view = self.win.viewer.active
        if view.orientation != key[0]:
            view.set_orientation(key[0])
        view.set_index(int(key[1]))
        self._sync_slice()

    def _on_volume(self) -> None:
        self.ctl.forget()
        if self.active is not None:
            self.active = None
        self.book = ChatBook()
        self.key = None
        QTimer.singleShot(0, self._load_from_doc)  # a project's chat is set right after the scan

    def _load_from_doc(self) -> None:
        self.book = ChatBook.from_json(self.doc.chat)
        self.key = None
        self._sync_slice()

    def _commit(self) -> None:
        """Hand the transcript to the document (saved with the project and autosave)."""
        self.doc.chat = self.book.to_json()
        self.doc.mark_changed()
        self._refresh_conversations()

    def clear_conversation(self) -> None:
        if self.key is None or self.busy:
            return
        self.book.convs.pop(self.key, None)
        self.ctl.forget(self.key)
        self._commit()
        self._render()

    # ----- regions ---------------------------------------------------------------------------
    def _refresh_regions(self) -> None:
        self.candidates = self.tracker.candidates(*self.key) if self.key else []
        self.region_combo.clear()
        for n, ref in enumerate(self.candidates):
            self.region_combo.addItem(ref.describe())
            self.region_combo.setItemData(n, ref.describe(), Qt.ItemDataRole.ToolTipRole)
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
        if self.ctl.state == "unconfigured":
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
        if self.busy or self.doc.volume is None or key != self.key:
            return
        conv = self.book.get(key)
        try:
            refs = [materialize(self.doc, r, *key) for r in refs]
            records = find_records(self.doc)
            regions = [r.model_region(records) for r in refs]
            history = [(q.text, [r.model_region(records) for r in q.regions], a.text)
                       for q, a in conv.turns()]
        except ValueError as exc:
            self._note(str(exc))
            return
        vol = self.doc.volume
        image = self.win.viewer.active.renderer.windowed(vol, slice_geometry(vol, *key), self.doc.window)
        signature = (tuple(self.doc.window), image.shape)
        answer = Message("assistant", state="streaming")
        conv.messages += [Message("user", text, refs), answer]
        self.input.clear()
        self.attached.clear()
        self.active = {"req": None, "conv": conv, "answer": answer, "refs": refs, "key": key}
        self._render()
        self._update_buttons()

        def start():
            if self.active is not None and self.active["answer"] is answer:
                self.active["req"] = self.ctl.ask(key, image, signature, history, text, regions)
                if self.active["req"] is None:  # an answer about the previous scan is still stopping
                    self._end_answer("failed", error="the model was busy; ask again")

        self.ctl.load(then=start)

    def stop(self) -> None:
        if self.active is None:
            return
        if self.active.get("req") is None:  # still loading the model: forget the question
            self._end_answer("stopped")
        else:
            self.ctl.stop()

    def _mine(self, req) -> bool:
        return self.active is not None and self.active.get("req") is req

    def _on_token(self, text: str) -> None:
        if self.active is None:
            return
        self.tokens_received += 1
        self.active["answer"].text += text
        if self.active["conv"].key == self.key:
            self.transcript.append(text)

    def _on_answer(self, req, turn) -> None:
        if not self._mine(req):
            return
        a, key, refs = self.active["answer"], self.active["key"], self.active["refs"]
        a.text = turn.text
        a.info = {"engine": turn.provenance.get("engine"), "device": turn.provenance.get("device"),
                  "stop_reason": turn.stop_reason, "seconds": round(req.get("seconds", 0.0), 2),
                  "replayed_turns": req.get("replayed", 0)}
        for mask in turn.masks:
            if not mask.any():
                a.info["empty_mask"] = True
                continue
            rec = PromptRecord(id=self.doc.new_prompt_id(), kind="grounding", orientation=key[0],
                               index=key[1], prompt=grounding_prompt(turn.question, refs),
                               provenance=dict(turn.provenance, region_refs=[r.to_json() for r in refs],
                                               chat_slice={"orientation": key[0], "index": key[1]}),
                               mask=mask.astype(bool))
            a.prompt_ids.append(rec.id)
            self.doc.propose(rec)
        self._end_answer("done")

    def _on_stopped(self, req, partial: str) -> None:
        if self._mine(req):
            self.active["answer"].text = partial
            self._end_answer("stopped")

    def _on_failed(self, req, reason: str) -> None:
        if self._mine(req):
            self._end_answer("failed", error=reason)

    def _end_answer(self, state: str, error: str = "") -> None:
        a = self.active["answer"]
        a.state = state
        if error:
            a.info["error"] = error
        self.active = None
        self._commit()
        self._render()
        self._update_buttons()

    def _note(self, text: str) -> None:
        if self.key is not None:
            self.book.get(self.key).messages.append(Message("note", text))
            self._render()

    # ----- rendering -------------------------------------------------------------------------
    def _rerender(self) -> None:
        """A proposal came or went: refresh the mask links (only they depend on it)."""
        conv = self.book.convs.get(self.key) if self.key else None
        if not self.busy and conv is not None and any(m.prompt_ids for m in conv.messages):
            self._render()

    def _render(self) -> None:
        conv = self.book.convs.get(self.key) if self.key else None
        if self.ctl.state in ("unconfigured", "error"):
            empty = self.ctl.message
        elif self.doc.volume is None or self.key is None:
            empty = "Open a scan to chat about it."
        else:
            empty = (f"No questions about {self._title(self.key)} yet. Try “What can you see in this "
                     "image?”, draw a box and ask “What is in <region>?”, or “Segment the liver”.")
        streaming = self.active is not None and conv is self.active["conv"]
        current = self.doc.proposal.record.id if self.doc.proposal is not None else None
        self.transcript.show_html(render_html(conv, find_records(self.doc), empty, current), streaming)

    def _on_anchor(self, url) -> None:
        if url.scheme() != "mask":
            return
        rec = find_records(self.doc).get(int(url.path() or 0))
        if rec is None or rec.mask is None:
            return
        self.go_to((rec.orientation, rec.index))
        show_again(self.doc, rec)

    def shutdown(self) -> None:
        self.ctl.shutdown()


def _name(path) -> str:
    return Path(str(path or "")).name
