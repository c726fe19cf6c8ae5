"""`BatchDialog`: choose a batch spec, run it on a worker thread with progress, ETA and Stop.

The run is `medplib_core.batch.run_batch` itself (resumable: finished cases are skipped, failed
ones retried). Stop sets its stop event: the running case finishes and is recorded, so the
manifest stays consistent and a second Run resumes. When the run ends its review queue opens.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from medplib_core.batch import BatchSpec, load_spec, run_batch
from medplib_core.batch.runner import format_duration

from ..dialogs import explain
from ..workers import TaskRunner

SPEC_FILTER = "Batch specs (*.yaml *.yml *.json);;All files (*)"


class _Relay(QObject):
    """Brings `BatchProgress` snapshots from the worker thread to the GUI thread."""

    progress = Signal(object)


def _snapshot(prog) -> dict[str, Any]:
    return {"done": prog.done, "total": prog.total, "ok": prog.ok, "failed": prog.failed,
            "skipped": prog.skipped, "elapsed": prog.elapsed, "eta": prog.eta_s, "last": prog.last}


class BatchDialog(QDialog):
    """Run a batch spec from the GUI (non-modal; the viewer stays usable meanwhile)."""

    progressed = Signal(dict)  # each progress snapshot (the review dock refreshes on it)

    def __init__(self, parent: QWidget | None = None, settings=None,
                 open_review: Callable[[Path], None] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Run a batch")
        self.settings = settings
        self.open_review = open_review
        self.runner = TaskRunner(1, self, "batch")
        self.stop_event: threading.Event | None = None
        self.spec: BatchSpec | None = None
        self.summary: dict[str, Any] | None = None
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)

        self.spec_edit = QLineEdit()
        self.spec_edit.setPlaceholderText("a YAML or JSON batch spec")
        self.spec_edit.editingFinished.connect(lambda: self.set_spec(self.spec_edit.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.spec_edit, 1)
        row.addWidget(browse)
        self.workers = QSpinBox()
        self.workers.setRange(0, 64)
        self.workers.setSpecialValueText("auto (the spec's, or one per CPU core / GPU)")
        self.workers.setToolTip("Worker processes, each with its own model")
        self.info = QLabel("Choose a spec: it names the cases, the engine and the prompts.")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Spec", row)
        form.addRow("Workers", self.workers)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%v / %m cases")
        self.status = QLabel("Not started.")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("Each finished case is listed here.")
        self.open_when_done = QCheckBox("Open the review queue when the run ends")
        self.open_when_done.setChecked(True)

        self.run_btn = QPushButton("Run")
        self.run_btn.setDefault(True)
        self.run_btn.clicked.connect(self.start)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Finish the running case(s), record them, then stop; Run again resumes")
        self.stop_btn.clicked.connect(self.stop)
        self.review_btn = QPushButton("Open review queue")
        self.review_btn.clicked.connect(self._open_review)
        self.close_btn = QPushButton("Close")
        self.close_btn.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.stop_btn)
        buttons.addStretch(1)
        buttons.addWidget(self.review_btn)
        buttons.addWidget(self.close_btn)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.info)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.log, 1)
        lay.addWidget(self.open_when_done)
        lay.addLayout(buttons)
        self.resize(640, 440)
        last = settings.get("review/last_spec", "", str) if settings else ""
        if last and Path(last).is_file():
            self.set_spec(last)
        self._update_buttons()

    # ----- spec --------------------------------------------------------------------------------
    def browse(self) -> None:
        start = self.spec_edit.text() or (self.settings.get("last_dir", str(Path.home()), str) if self.settings else "")
        path, _ = QFileDialog.getOpenFileName(self, "Choose a batch spec", start, SPEC_FILTER)
        if path:
            self.set_spec(path)

    def set_spec(self, path: str | Path) -> bool:
        """Read the spec now (names its problem in the dialog when it is unusable)."""
        path = str(path).strip()
        if self.spec_edit.text() != path:
            self.spec_edit.setText(path)
        self.spec = None
        if not path:
            self._update_buttons()
            return False
        try:
            spec = load_spec(path)
        except Exception as exc:  # a spec error is shown in the dialog, never raised
            self.info.setText(f"<span style='color:#c0392b'>{explain(exc)[0]}</span>")
            self._update_buttons()
            return False
        self.spec = spec
        prompts = sum(len(v) for v in spec.prompts.values())
        what = f"{prompts} prompt(s)" + (f", targets {', '.join(spec.targets)}" if spec.targets else "")
        self.info.setText(f"{len(spec.cases)} case(s), engine {spec.engine.get('name')}, {what}; "
                          f"output: {spec.output}")
        if self.settings:
            self.settings.set("review/last_spec", path)
        self._update_buttons()
        return True

    # ----- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.stop_event is not None

    def start(self) -> bool:
        """Run (or resume) the chosen spec on a worker thread."""
        if self.running or not self.set_spec(self.spec_edit.text()):
            return False
        spec, stop = self.spec, threading.Event()
        self.stop_event, self.summary = stop, None
        self.bar.setRange(0, len(spec.cases))
        self.bar.setValue(0)
        self.status.setText("Starting: loading the model…")
        self.log.appendPlainText(f"— run {spec.source} → {spec.output}")
        relay = self._relay
        workers = self.workers.value() or None

        def work():
            return run_batch(spec, workers=workers, stop=stop,
                             progress=lambda prog: relay.progress.emit(_snapshot(prog)))

        self.runner.submit(work, name="batch", on_done=self._on_done, on_error=self._on_error)
        self._update_buttons()
        return True

    def stop(self) -> None:
        if self.stop_event is not None and not self.stop_event.is_set():
            self.stop_event.set()
            self.status.setText(self.status.text() + " — stopping after the running case(s)…")
            self._update_buttons()

    def _on_progress(self, p: dict[str, Any]) -> None:
        self.bar.setMaximum(max(p["total"], 1))
        self.bar.setValue(p["done"])
        stopping = " — stopping after the running case(s)…" if self.stop_event and self.stop_event.is_set() else ""
        self.status.setText(f"{p['done']}/{p['total']}  ok {p['ok']}  failed {p['failed']}  "
                            f"skipped {p['skipped']}  elapsed {format_duration(p['elapsed'])}  "
                            f"ETA {format_duration(p['eta'])}{stopping}")
        last = p["last"]
        if last is not None and last is not getattr(self, "_last_logged", None):
            self._last_logged = last
            line = f"{last.get('case')}: {last.get('status')}"
            if last.get("error"):
                line += f" — {last['error']}"
            elif last.get("timings"):
                line += f" ({last['timings'].get('total_s')} s)"
            self.log.appendPlainText(line)
        self.progressed.emit(p)

    def _on_done(self, summary: dict[str, Any]) -> None:
        self.stop_event = None
        self.summary = summary
        state = "Stopped" if summary["stopped"] else "Finished"
        text = (f"{state}: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped "
                f"of {summary['total']} in {format_duration(summary['elapsed_s'])} "
                f"with {summary['workers']} worker(s).")
        if summary["stopped"]:
            text += " Run again to resume."
        self.status.setText(text)
        self.log.appendPlainText(text)
        self._update_buttons()
        if self.open_when_done.isChecked() and not summary["stopped"]:
            self._open_review()

    def _on_error(self, exc: BaseException) -> None:
        self.stop_event = None
        reason = explain(exc)[0]
        self.status.setText(f"The run failed: {reason}")
        self.log.appendPlainText(f"failed: {reason}")
        self._update_buttons()

    def _open_review(self) -> None:
        if self.spec is not None and self.open_review is not None:
            self.open_review(self.spec.output)

    def _update_buttons(self) -> None:
        running = self.running
        self.run_btn.setEnabled(not running and self.spec is not None)
        self.run_btn.setText("Run (resume)" if self.spec is not None and (self.spec.output / "manifest.jsonl").exists()
                             else "Run")
        self.stop_btn.setEnabled(running and not self.stop_event.is_set())
        self.close_btn.setEnabled(not running)
        self.spec_edit.setEnabled(not running)
        self.review_btn.setEnabled(not running and self.spec is not None
                                   and (self.spec.output / "manifest.jsonl").exists())

    # ----- closing -----------------------------------------------------------------------------
    def reject(self) -> None:  # Esc and Close: while running, Esc asks to stop instead
        if self.running:
            self.stop()
            return
        super().reject()

    def shutdown(self) -> None:
        """Stop a running batch and wait for its running case (the app is closing)."""
        if self.stop_event is not None:
            self.stop_event.set()
        self.runner.wait(120000)
