"""Autosave and crash recovery store (no Qt): one folder per running session.

``root/session-<pid>-<stamp>/`` holds ``session.json`` (who owns it, which scan) and a
``snapshot.medplib`` project written with `save_project` (atomic). A clean exit deletes the
session folder; a folder whose owning process is gone is an *orphan* that the next start offers
to restore.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..export.atomic import atomic_write_text
from .format import PROJECT_FILE, Project, load_project, save_project

SNAPSHOT = "snapshot.medplib"


def _process_start(pid: int) -> float | None:
    """Start time of a live process, or None when it is gone (zombies count as gone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except ImportError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return -1.0
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return None


@dataclass
class Orphan:
    """A session left behind by a process that crashed or was killed."""

    folder: Path
    info: dict[str, Any]

    @property
    def scan_path(self) -> str:
        return str(self.info.get("scan", {}).get("path", ""))

    @property
    def saved(self) -> str:
        return str(self.info.get("last_autosave") or self.info.get("started", ""))

    @property
    def crashed(self) -> bool:
        """False when the app was closed normally with unsaved work, True after a crash or kill."""
        return not self.info.get("closed_with_unsaved_work", False)

    def describe(self) -> str:
        scan = Path(self.scan_path).name or "an unsaved scan"
        return f"{scan} (autosaved {self.saved}, {self.info.get('edits', 0)} changes)"


class RecoverySession:
    """The autosave slot of the running process."""

    def __init__(self, folder: Path, info: dict[str, Any]):
        self.folder = folder
        self.info = info

    def _write_info(self) -> None:
        atomic_write_text(self.folder / "session.json", json.dumps(self.info, indent=1, default=str))

    def save(self, project: Project, edits: int = 0) -> Path:
        """Write a snapshot of ``project`` (atomically) and record when."""
        path = save_project(self.folder / SNAPSHOT, project)
        self.info["scan"] = project.scan
        self.info["last_autosave"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.info["edits"] = int(edits)
        self._write_info()
        return path

    def mark_closed(self) -> None:
        """The app closed normally but kept unsaved work here (the next start offers it)."""
        self.info["closed_with_unsaved_work"] = True
        self._write_info()

    def has_snapshot(self) -> bool:
        return (self.folder / SNAPSHOT / PROJECT_FILE).is_file()

    def close(self) -> None:
        """A clean exit: nothing to recover, remove the folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


class RecoveryStore:
    """All autosave sessions under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def start_session(self) -> RecoverySession:
        self.root.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        folder = self.root / f"session-{pid}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
        folder.mkdir(parents=True)
        info = {"pid": pid, "pid_start": _process_start(pid), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "scan": {}, "last_autosave": None, "edits": 0}
        session = RecoverySession(folder, info)
        session._write_info()
        return session

    def orphans(self) -> list[Orphan]:
        """Sessions whose process is gone and that hold a snapshot, newest first."""
        out: list[Orphan] = []
        if not self.root.is_dir():
            return out
        for folder in self.root.glob("session-*"):
            try:
                info = json.loads((folder / "session.json").read_text())
            except (OSError, ValueError):
                continue
            if not info.get("closed_with_unsaved_work") and self._alive(info):
                continue  # a running session (this or another instance of the app)
            if not (folder / SNAPSHOT / PROJECT_FILE).is_file():
                shutil.rmtree(folder, ignore_errors=True)  # crashed before any change: nothing to offer
                continue
            out.append(Orphan(folder, info))
        out.sort(key=lambda o: o.saved, reverse=True)
        return out

    @staticmethod
    def _alive(info: dict[str, Any]) -> bool:
        pid = int(info.get("pid", -1))
        if pid <= 0:
            return False
        start = _process_start(pid)
        if start is None:
            return False
        recorded = info.get("pid_start")
        return recorded is None or start < 0 or abs(float(recorded) - start) < 1.0

    def load(self, orphan: Orphan) -> Project:
        return load_project(orphan.folder / SNAPSHOT)

    def discard(self, orphan: Orphan) -> None:
        shutil.rmtree(orphan.folder, ignore_errors=True)
