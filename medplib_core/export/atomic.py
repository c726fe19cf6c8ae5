"""Atomic file writes: write beside the target, flush to disk, then rename over it.

A killed process leaves either the old file or the new one at the target path, never a partial
file. Temporaries are named ``.<target name>.<pid>-<random>.partial<suffix>``; a write into a
folder first removes the temporaries there whose process is gone, so a kill leaves nothing
behind for long. Files get the mode the umask allows (``0666 & ~umask``, what ``open`` gives a
new file), so colleagues can read exports on a shared drive when the umask lets them.

`AtomicGroup` commits several files together (a label map and its sidecar): all are written
and flushed first, then renamed in the order they were added, so a failure while writing
leaves every target as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import Iterator

_TEMP_RE = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.partial")
_LEGACY_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial")  # tempfile names of earlier versions
LEGACY_AGE_S = 3600


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries left in ``folder`` by writers that were killed; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(".") or ".partial" not in entry.name:
            continue
        m = _TEMP_RE.match(entry.name)
        try:
            stale = (m is not None and not _alive(int(m.group(1)))) or (
                m is None and _LEGACY_RE.match(entry.name) is not None
                and now - entry.stat().st_mtime > LEGACY_AGE_S)
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


class AtomicGroup:
    """Files written to temporaries, then committed together (use as a context manager).

    ``add(target)`` returns the temporary path to write. On a clean exit every temporary is
    flushed to disk, then renamed onto its target in the order added, then the folders are
    flushed; on an exception nothing is renamed. Temporaries never outlive the block.
    """

    def __init__(self) -> None:
        self.pairs: list[tuple[Path, Path]] = []
        self._cleaned: set[Path] = set()

    def add(self, target: str | os.PathLike, suffix: str | None = None) -> Path:
        target = Path(target)
        folder = target.parent
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in self._cleaned:
            remove_stale_temporaries(folder)
            self._cleaned.add(folder)
        if suffix is None:
            suffix = "".join(target.suffixes) or ".tmp"
        name = f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}"
        tmp = folder / name
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.pairs.append((tmp, target))
        os.chmod(tmp, 0o666 & ~current_umask())  # what open() would give the target itself
        return tmp

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                self._commit()
        finally:
            for tmp, _ in self.pairs:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _commit(self) -> None:
        for tmp, _ in self.pairs:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, target in self.pairs:
            os.replace(tmp, target)
        for folder in dict.fromkeys(target.parent for _, target in self.pairs):
            _fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    ``suffix`` keeps the extension that writers look at (e.g. ``.nii.gz``); it defaults to the
    target's own full suffix.
    """
    with AtomicGroup() as group:
        yield group.add(target, suffix)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
