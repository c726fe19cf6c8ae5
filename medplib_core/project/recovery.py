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
from .format import PROJECT_FILE, Project, save_project
from .reader import load_project

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
        scan = self.info.get("scan")
        return str(scan.get("path", "") or "") if isinstance(scan, dict) else ""

    @property
    def saved(self) -> str:
        return str(self.info.get("last_autosave") or self.info.get("started", "") or "")

    @property
    def crashed(self) -> bool:
        """False when the app was closed normally with unsaved work, True after a crash or kill."""
        return self.info.get("closed_with_unsaved_work") is not True

    @property
    def damaged(self) -> bool:
        """The session record (session.json) was unreadable; the snapshot itself may be fine."""
        return bool(self.info.get("damaged_record"))

    def describe(self) -> str:
        scan = Path(self.scan_path).name or "an unsaved scan"
        edits = self.info.get("edits", 0)
        edits = edits if isinstance(edits, int) and not isinstance(edits, bool) else "?"
        what = f"{scan} (autosaved {self.saved or 'at an unknown time'}, {edits} changes)"
        return what + (" — its session record is damaged" if self.damaged else "")


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
                orphan = self._orphan(folder)
            except Exception:  # noqa: BLE001 - one damaged session never hides the others
                continue
            if orphan is not None:
                out.append(orphan)
        out.sort(key=lambda o: o.saved, reverse=True)
        return out

    def _orphan(self, folder: Path) -> Orphan | None:
        """The orphan in ``folder``, or None (a live session, or nothing to offer)."""
        if not folder.is_dir():
            return None
        has_snapshot = (folder / SNAPSHOT / PROJECT_FILE).is_file()
        try:
            info = json.loads((folder / "session.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):
            # unreadable or not an object ("[]"): the owner is unknown; offer its snapshot
            return Orphan(folder, {"damaged_record": True}) if has_snapshot else None
        if info.get("closed_with_unsaved_work") is not True and self._alive(info):
            return None  # a running session (this or another instance of the app)
        if not has_snapshot:
            shutil.rmtree(folder, ignore_errors=True)  # crashed before any change: nothing to offer
            return None
        return Orphan(folder, info)

    @staticmethod
    def _alive(info: dict[str, Any]) -> bool:
        try:
            pid = int(info.get("pid", -1))
        except (TypeError, ValueError, OverflowError):
            return False  # {"pid": "abc"}: no process owns it
        if pid <= 0 or pid > 2**22:
            return False
        start = _process_start(pid)
        if start is None:
            return False
        recorded = info.get("pid_start")
        try:
            return recorded is None or start < 0 or abs(float(recorded) - start) < 1.0
        except (TypeError, ValueError):
            return False

    def load(self, orphan: Orphan) -> Project:
        return load_project(orphan.folder / SNAPSHOT)

    def discard(self, orphan: Orphan) -> None:
        shutil.rmtree(orphan.folder, ignore_errors=True)
