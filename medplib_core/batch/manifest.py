"""The run manifest: an append-only JSON-lines log of case results and review decisions.

Each line is one record, flushed and fsynced as it is written, so a kill or Ctrl+C leaves every
finished record intact; a torn last line (a kill mid-write) is ignored when reading. The latest
record of a kind for a case wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from ..checksums import file_sha256  # noqa: F401  (also used by review and case)

MANIFEST_NAME = "manifest.jsonl"


def input_checksum(path: str | Path) -> str:
    """SHA-256 over a file, or over every file of a folder (names and contents, sorted); for a
    DICOMweb series URL, over the URL and its SOP Instance UIDs (no download)."""
    from ..pacs.urls import is_url

    if is_url(path):
        from ..pacs.source import series_checksum

        return series_checksum(str(path))
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def path_inside(run_dir: Path, rel: Any) -> Path | None:
    """``run_dir / rel`` when ``rel`` (read from a manifest) names a path inside the run folder
    once links are resolved; None for anything else (absolute paths, ``..``, links out)."""
    if not isinstance(rel, str) or not rel or "\0" in rel or Path(rel).is_absolute():
        return None
    full = Path(run_dir) / rel
    try:
        resolved, root = full.resolve(), Path(run_dir).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return full if root in resolved.parents else None


class Manifest:
    """Reads and appends the records of one run folder's manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir() or self.path.suffix.lower() not in (".jsonl", ".json"):
            self.path = self.path / MANIFEST_NAME  # a run folder (which may not exist yet)

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):
                    continue  # a torn line from a kill mid-write
                if isinstance(rec, dict) and isinstance(rec.get("case"), str) and rec["case"]:
                    yield rec

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                fh.write("\n")  # isolate a torn line left by an earlier kill
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def latest(self, kind: str = "result") -> dict[str, dict[str, Any]]:
        """The last record of ``kind`` ("result" or "review") for each case."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            if rec.get("kind", "result") == kind:
                out[rec["case"]] = rec
        return out

    def is_done(self, case_id: str, checksum: str, run_dir: Path) -> bool:
        """True when the case finished on this exact input and its output is intact."""
        rec = self.latest().get(case_id)
        if not rec or rec.get("status") != "ok" or rec.get("input_sha256") != checksum:
            return False
        out = path_inside(run_dir, rec.get("output"))
        return out is not None and out.is_file() and file_sha256(out) == rec.get("output_sha256")
