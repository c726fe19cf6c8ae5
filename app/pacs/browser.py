"""`StudyBrowser` (File ▸ Open from PACS…): pick a server, search studies (QIDO-RS), list a
study's series, open one. Searches run on a worker thread; opening hands the series URL to the
window, whose loader retrieves it (WADO-RS, with progress and cancel) through the cache."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QGridLayout, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from medplib_core.pacs import PacsError
from medplib_core.pacs.query import StudyQuery

from ..workers import TaskRunner
from .server_dialog import ServerDialog
from .servers import ServerConfig, ServerStore

MODALITIES = ("", "CT", "MR", "PT", "US", "CR", "DX", "MG", "XA", "NM", "SEG")
STUDY_COLUMNS = ("Patient", "Patient ID", "Date", "Accession", "Description", "Modalities", "Series", "Images")
SERIES_COLUMNS = ("Modality", "Number", "Description", "Images")


def _search(service: str, creds, query: StudyQuery):
    from medplib_core.pacs.client import PacsClient

    return PacsClient(service, creds).search_studies(query)


def _series(service: str, creds, study_uid: str):
    from medplib_core.pacs.client import PacsClient

    return PacsClient(service, creds).search_series(study_uid)


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _table(columns, stretch: int) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    header = t.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)  # the description
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().setVisible(False)
    t.setAlternatingRowColors(True)
    return t


def _fill(table: QTableWidget, rows: list[list]) -> None:
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, v in enumerate(values):
            item = QTableWidgetItem("" if v is None else str(v))
            if isinstance(v, int):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class StudyBrowser(QDialog):
    """Search a PACS and open a series; ``open_series`` carries the series URL."""

    open_series = Signal(str)

    def __init__(self, store: ServerStore, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.store = store
        self.runner = TaskRunner(2, self, "pacs-search")
        self.studies: list = []
        self.series: list = []
        self._task = None
        self._ask = None

        self.server = QComboBox()
        self.server.setMinimumWidth(360)
        self.add_button, self.edit_button = QPushButton("Add…"), QPushButton("Edit…")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(lambda: self.edit_server(None))
        self.edit_button.clicked.connect(lambda: self.edit_server(self.current_server()))
        self.remove_button.clicked.connect(self.remove_server)
        top = QHBoxLayout()
        top.addWidget(QLabel("Server"))
        top.addWidget(self.server, 1)
        for b in (self.add_button, self.edit_button, self.remove_button):
            top.addWidget(b)

        self.patient_name, self.patient_id, self.accession = QLineEdit(), QLineEdit(), QLineEdit()
        self.patient_name.setPlaceholderText("e.g. Doe (matches the start)")
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for w in (self.date_from, self.date_to):
            w.setPlaceholderText("YYYY-MM-DD")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        form = QGridLayout()
        for col, (label, w) in enumerate((("Patient name", self.patient_name), ("Patient ID", self.patient_id),
                                          ("Accession", self.accession))):
            form.addWidget(QLabel(label), 0, 2 * col)
            form.addWidget(w, 0, 2 * col + 1)
        form.addWidget(QLabel("Study date from"), 1, 0)
        form.addWidget(self.date_from, 1, 1)
        form.addWidget(QLabel("to"), 1, 2)
        form.addWidget(self.date_to, 1, 3)
        form.addWidget(QLabel("Modality"), 1, 4)
        mod_row = QHBoxLayout()
        mod_row.addWidget(self.modality, 1)
        mod_row.addWidget(self.search_button)
        form.addLayout(mod_row, 1, 5)
        for w in (self.patient_name, self.patient_id, self.accession, self.date_from, self.date_to):
            w.returnPressed.connect(self.search)

        self.study_table = _table(STUDY_COLUMNS, stretch=4)
        self.study_table.itemSelectionChanged.connect(self._study_chosen)
        self.series_table = _table(SERIES_COLUMNS, stretch=2)
        self.series_table.itemSelectionChanged.connect(self._update_buttons)
        self.series_table.doubleClicked.connect(lambda *_: self.open_selected())
        split = QSplitter(Qt.Orientation.Vertical)
        for title, table in (("Studies", self.study_table), ("Series of the selected study", self.series_table)):
            box = QWidget()
            v = QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.addWidget(QLabel(f"<b>{title}</b>"))
            v.addWidget(table)
            split.addWidget(box)
        split.setSizes([300, 200])

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(140)
        self.busy.hide()
        self.cancel_button = QPushButton("Stop")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open series")
        self.open_button.clicked.connect(self.open_selected)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.busy)
        bottom.addWidget(self.cancel_button)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.open_button)
        bottom.addWidget(close)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(form)
        lay.addWidget(split, 1)
        lay.addLayout(bottom)
        self.resize(1060, 640)
        self.reload_servers()

    # ----- servers ---------------------------------------------------------------------------
    def reload_servers(self, select: str | None = None) -> None:
        self.server.clear()
        for s in self.store.servers():
            self.server.addItem(s.label(), s)
        if select:
            i = next((i for i in range(self.server.count()) if self.server.itemData(i).service == select), 0)
            self.server.setCurrentIndex(i)
        if not self.server.count():
            self._show("No PACS server yet: add one (its DICOMweb URL, e.g. http://pacs:8042/dicom-web).")
        self._update_buttons()

    def current_server(self) -> ServerConfig | None:
        return self.server.currentData()

    def edit_server(self, server: ServerConfig | None) -> ServerDialog:
        dlg = ServerDialog(self.store, server, self)

        def saved(s):
            self.reload_servers(select=s.service)
            self._show(f"Saved {s.label()}. {dlg.note}".strip())

        dlg.saved.connect(saved)
        dlg.open()
        self.server_dialog = dlg
        return dlg

    def remove_server(self) -> None:
        s = self.current_server()
        if s is not None:
            self.store.remove(s)
            self.reload_servers()

    def _with_credentials(self, then) -> None:
        """Run ``then(server, creds)``, asking for the secret first when it is not known."""
        server = self.current_server()
        if server is None:
            self._show("Add a PACS server first.", error=True)
            return
        creds = self.store.credentials(server)
        if creds is not None:
            then(server, creds)
            return
        what = "token" if server.auth == "bearer" else f"password of {server.username}"
        ask = QInputDialog(self)
        ask.setWindowTitle("PACS credentials")
        ask.setLabelText(f"The {what} for {server.service}:\n({self.store.keyring_text()})")
        ask.setTextEchoMode(QLineEdit.EchoMode.Password)

        def typed(secret: str):
            self._show(self.store.set_secret(server, secret))
            then(server, self.store.credentials(server))

        ask.textValueSelected.connect(typed)
        ask.open()
        self._ask = ask

    # ----- search ----------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        return StudyQuery(self.patient_name.text(), self.patient_id.text(), self.accession.text(),
                          self.date_from.text(), self.date_to.text(), self.modality.currentText())

    def search(self) -> None:
        try:
            query = self.query()
            query.filters()  # a bad date is said here, before any request
        except PacsError as exc:
            self._show(exc.reason, error=True)
            return
        self._with_credentials(lambda server, creds: self._run(
            f"Searching {server.service}…", _search, server.service, creds, query, on_done=self._studies_found))

    def _studies_found(self, rows) -> None:
        self.studies = rows
        _fill(self.study_table, [[r.patient_name.replace("^", " "), r.patient_id, _date(r.date), r.accession,
                                  r.description, ", ".join(r.modalities), r.n_series, r.n_instances] for r in rows])
        self.series = []
        _fill(self.series_table, [])
        self._show(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} found." if rows else "No study matches.")
        if rows:
            self.study_table.selectRow(0)

    def _study_chosen(self) -> None:
        r = self.study_table.currentRow()
        if not 0 <= r < len(self.studies):
            return
        study = self.studies[r].study_uid
        self._with_credentials(lambda server, creds: self._run(
            "Listing the series…", _series, server.service, creds, study, on_done=self._series_found))

    def _series_found(self, rows) -> None:
        self.series = rows
        _fill(self.series_table, [[r.modality, r.number, r.description, r.n_instances] for r in rows])
        images = [r for r in rows if r.modality not in ("SEG", "RTSTRUCT", "SR", "PR", "KO")]
        if images:
            self.series_table.selectRow(rows.index(images[0]))
        self._show(f"{len(rows)} series in the study.")
        self._update_buttons()

    def _run(self, text: str, fn, *args, on_done) -> None:
        self.cancel()
        self._show(text)
        self.busy.show()
        self.cancel_button.show()

        def finish():
            self.busy.hide()
            self.cancel_button.hide()
            self._task = None

        def done(result):
            finish()
            on_done(result)

        def failed(exc):
            finish()
            self._show(str(exc) if isinstance(exc, PacsError) else f"{type(exc).__name__}: {exc}", error=True)

        self._task = self.runner.submit(fn, *args, name="pacs search", on_done=done, on_error=failed,
                                        on_cancel=finish)

    def cancel(self) -> None:
        """Stop waiting for the search in flight (its answer is dropped; requests time out)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.busy.hide()
            self.cancel_button.hide()
            self._show("Stopped.")

    # ----- open ------------------------------------------------------------------------------
    def selected_series(self):
        r = self.series_table.currentRow()
        return self.series[r] if 0 <= r < len(self.series) else None

    def open_selected(self) -> None:
        s = self.selected_series()
        if s is None:
            return
        self.open_series.emit(s.url)
        self.accept()

    def _update_buttons(self) -> None:
        has = self.current_server() is not None
        self.edit_button.setEnabled(has)
        self.remove_button.setEnabled(has)
        self.search_button.setEnabled(has)
        self.open_button.setEnabled(self.selected_series() is not None)

    def _show(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    def done(self, code: int) -> None:  # noqa: D401 - Qt override
        self.cancel()
        super().done(code)
