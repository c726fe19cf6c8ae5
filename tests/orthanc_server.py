"""A real Orthanc PACS with its DICOMweb plugin, run for the tests on 127.0.0.1.

`OrthancServer` writes a configuration into a temporary folder (its own storage and index,
free HTTP and DICOM ports, the DicomWeb plugin enabled, HTTP basic authentication for one
user), starts the Debian ``Orthanc`` binary in the foreground, waits until its REST API
answers and stops it again. `find_orthanc` / `find_dicomweb_plugin` say whether the Debian
packages ``orthanc`` and ``orthanc-dicomweb`` are installed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                     "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                     "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
                     "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medplib", "orthanc-test-secret"


def find_orthanc() -> str | None:
    """Path of the Orthanc server binary (Debian installs it as /usr/sbin/Orthanc)."""
    for name in ("Orthanc", "orthanc"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def find_dicomweb_plugin() -> str | None:
    for pattern in PLUGIN_CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


def _end_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the test process dies, even by a crash."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the fixture's stop() is all there is
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    """One Orthanc process with its own storage under ``folder``."""

    def __init__(self, folder: Path, binary: str, plugin: str, users: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.binary, self.plugin = binary, plugin
        self.users = {USER: PASSWORD} if users is None else users
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = self.folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items())) if self.users else None

    def _config(self) -> dict:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        return {
            "Name": "MedPLIB test PACS",
            "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.port, "DicomPort": free_port(), "DicomAet": "MEDPLIBTEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users), "RegisteredUsers": dict(self.users),
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": f"127.0.0.1:{self.port}", "Ssl": False},
            "SaveJobs": False, "ConcurrentJobs": 1, "HttpThreadsCount": 8,
            "StorageCompression": False, "HttpCompressionEnabled": False,
        }

    def start(self, timeout: float = 45.0) -> "OrthancServer":
        last = ""
        for _attempt in range(3):  # a free port can be taken between choosing and binding
            self.port = free_port()
            cfg = self.folder / "orthanc.json"
            cfg.write_text(json.dumps(self._config(), indent=1))
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([self.binary, f"--logdir={self.folder}", str(cfg)],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                         start_new_session=True, preexec_fn=_end_with_parent)
            log.close()
            if self._wait_ready(timeout):
                return self
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"Orthanc did not start; its log ends:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                r = requests.get(f"{self.url}/system", auth=self.auth, timeout=2)
                if r.ok and requests.get(f"{self.dicomweb}/studies", auth=self.auth, timeout=5).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def log_tail(self, n: int = 4000) -> str:
        texts = []
        for p in sorted(self.folder.glob("*.log*")):
            try:
                texts.append(p.read_text(errors="replace")[-n:])
            except OSError:
                pass
        return "\n".join(texts)[-n:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    # ----- REST helpers for tests (Orthanc's own API, not DICOMweb) ------------------------
    def upload(self, path: str | Path) -> dict:
        r = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def delete_series_of(self, series_uid: str) -> None:
        r = requests.post(f"{self.url}/tools/lookup", data=series_uid, auth=self.auth, timeout=10)
        r.raise_for_status()
        for item in r.json():
            requests.delete(f"{self.url}{item['Path']}", auth=self.auth, timeout=30).raise_for_status()

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ----- test series ---------------------------------------------------------------------------
def copy_with_uids(src_files, dest: Path, new_uids: bool = False, **changes) -> list[Path]:
    """Copy DICOM files into ``dest``, filling in empty Study/Series/SOP Instance UIDs (an
    anonymised series may have none, which a PACS rejects) and applying ``changes``;
    ``new_uids`` gives the copy new UIDs throughout (a second, independent series)."""
    import pydicom
    from pydicom.uid import generate_uid

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    out = []
    for f in sorted(src_files):
        ds = pydicom.dcmread(f)
        if new_uids or not str(ds.get("StudyInstanceUID", "") or ""):
            ds.StudyInstanceUID = study_uid
        if new_uids or not str(ds.get("SeriesInstanceUID", "") or ""):
            ds.SeriesInstanceUID = series_uid
        if new_uids:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        elif not str(ds.get("SOPInstanceUID", "") or ""):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        for k, v in changes.items():
            setattr(ds, k, v)
        path = dest / Path(f).name
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def upload_series(server: "OrthancServer", name: str, files, dest: Path, new_uids: bool = False,
                  **changes) -> dict:
    """Copy (filling in missing UIDs), upload to ``server`` and describe one series."""
    import pydicom

    copies = copy_with_uids(files, dest, new_uids, **changes)
    for f in copies:
        server.upload(f)
    ds = pydicom.dcmread(copies[0], stop_before_pixels=True)
    study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    return {"name": name, "folder": Path(dest), "files": copies, "study": study, "series": series,
            "url": f"{server.dicomweb}/studies/{study}/series/{series}", "n": len(copies)}
