"""On-disk cache of retrieved series: bounded in size, least recently used out first.

Layout: ``<root>/<service key>/<SeriesInstanceUID>/`` holds one ``.dcm`` file per instance
and ``.medplib-pacs.json`` (service, study, series, SOP Instance UIDs, bytes). A series is
downloaded into a temporary folder under ``<root>/.partial/`` and renamed into place only once
every instance is on disk, so a series folder is always complete; a folder without its
manifest is never trusted. The manifest's modification time is the last use (LRU order).

Root: ``$MEDPLIB_PACS_CACHE``, else ``$MEDPLIB_CACHE_DIR/pacs``, else
``~/.cache/medplib-studio/pacs``. Size bound: ``$MEDPLIB_PACS_CACHE_MB`` (default 4096 MB).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .urls import SeriesRef

MANIFEST = ".medplib-pacs.json"
PARTIAL = ".partial"
DEFAULT_MB = 4096
STALE_S = 24 * 3600  # a partial download older than this was left by a dead process


def default_root() -> Path:
    env = os.environ.get("MEDPLIB_PACS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("MEDPLIB_CACHE_DIR") or os.path.join(Path.home(), ".cache", "medplib-studio")
    return Path(base) / "pacs"


def default_max_bytes() -> int:
    try:
        mb = float(os.environ.get("MEDPLIB_PACS_CACHE_MB", DEFAULT_MB))
    except ValueError:
        mb = DEFAULT_MB
    return int(max(mb, 0) * 1024 * 1024)


def service_key(service: str) -> str:
    """A short, file-name-safe key for a service URL."""
    return hashlib.sha256(service.encode()).hexdigest()[:16]


@dataclass
class CachedSeries:
    folder: Path
    service: str
    study: str
    series: str
    instances: list[str]  # SOP Instance UIDs
    bytes: int
    retrieved: float  # time.time() of the retrieve

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


class SeriesCache:
    """The series cache under ``root``, kept under ``max_bytes``."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)

    def folder_for(self, ref: SeriesRef) -> Path:
        return self.root / service_key(ref.service) / ref.series

    # ----- reading ---------------------------------------------------------------------------
    def lookup(self, ref: SeriesRef) -> CachedSeries | None:
        """The complete cached copy of ``ref``, or None (absent, damaged or from another URL)."""
        entry = self._read(self.folder_for(ref))
        if entry is None or (entry.service, entry.study, entry.series) != (ref.service, ref.study, ref.series):
            return None
        return entry

    def touch(self, entry: CachedSeries) -> None:
        """Mark a cached series as just used (LRU order)."""
        with contextlib.suppress(OSError):
            os.utime(entry.manifest)

    def _read(self, folder: Path) -> CachedSeries | None:
        try:
            d = json.loads((folder / MANIFEST).read_text())
            entry = CachedSeries(folder, d["service"], d["study"], d["series"], list(d["instances"]),
                                 int(d["bytes"]), float(d["retrieved"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
        if len(files) != len(entry.instances) or sum(f.stat().st_size for f in files) != entry.bytes:
            return None  # a file was removed or changed behind our back
        return entry

    def entries(self) -> list[CachedSeries]:
        out = []
        if not self.root.is_dir():
            return out
        for svc in self.root.iterdir():
            if not svc.is_dir() or svc.name.startswith("."):
                continue
            for folder in svc.iterdir():
                if folder.is_dir() and not folder.name.startswith("."):
                    e = self._read(folder)
                    if e is not None:
                        out.append(e)
        return out

    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    # ----- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, ref: SeriesRef) -> Iterator[Path]:
        """Yield an empty temporary folder to download ``ref`` into. On a normal exit, call
        `commit` inside the block; whatever happens, the temporary folder is gone afterwards."""
        partial = self.root / PARTIAL
        partial.mkdir(parents=True, exist_ok=True)
        self._clean_partials(partial)
        tmp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.{ref.series[-16:].replace('.', '_')}.", dir=partial))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, tmp: Path, ref: SeriesRef, instances: list[str]) -> CachedSeries:
        """Write the manifest into ``tmp`` and rename it into place (replacing an older copy)."""
        files = [f for f in tmp.iterdir() if f.is_file() and not f.name.startswith(".")]
        entry = CachedSeries(self.folder_for(ref), ref.service, ref.study, ref.series, list(instances),
                             sum(f.stat().st_size for f in files), time.time())
        manifest = {"service": ref.service, "study": ref.study, "series": ref.series,
                    "instances": entry.instances, "bytes": entry.bytes, "retrieved": entry.retrieved,
                    "url": ref.url, "version": 1}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        final = entry.folder
        final.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix="old.", dir=self.root / PARTIAL))
            os.replace(final, old / "series")
        try:
            os.replace(tmp, final)
        except OSError:
            if old is not None and not final.exists():
                os.replace(old / "series", final)  # put the previous copy back
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        self.evict(keep={final})
        return entry

    def evict(self, keep: set[Path] = frozenset()) -> list[Path]:
        """Remove least recently used series until the cache fits ``max_bytes``."""
        entries = sorted(self.entries(), key=lambda e: _mtime(e.manifest))
        total = sum(e.bytes for e in entries)
        removed = []
        for e in entries:
            if total <= self.max_bytes:
                break
            if e.folder in keep:
                continue
            shutil.rmtree(e.folder, ignore_errors=True)
            total -= e.bytes
            removed.append(e.folder)
        return removed

    def remove(self, ref: SeriesRef) -> None:
        shutil.rmtree(self.folder_for(ref), ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _clean_partials(partial: Path) -> None:
        """Remove downloads left behind by processes that died (or very old ones)."""
        now = time.time()
        for p in partial.iterdir():
            pid = _pid_of(p.name)
            dead = pid is not None and pid != os.getpid() and not _alive(pid)
            if dead or now - _mtime(p) > STALE_S:
                shutil.rmtree(p, ignore_errors=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _pid_of(name: str) -> int | None:
    head = name.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # rely on the age rule elsewhere
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
