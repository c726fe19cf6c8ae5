"""Series URLs as scans: `resolve_scan` turns a DICOMweb series URL into a local folder.

Everything that takes a scan (the loader, the CLIs, batch) goes through here: a path is
returned unchanged; a series URL is looked up on the server (QIDO-RS lists its instances),
retrieved with WADO-RS into the `SeriesCache` unless a complete copy of exactly those
instances is already there, and the cache folder is returned. `load_series_url` is what
`medplib_core.load` calls for a URL: the same loader as a local folder, with the URL as the
volume's source path (so projects and manifests keep the URL, never a cache path).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

from ..errors import CancelledError, LoadError
from .cache import CachedSeries, SeriesCache
from .errors import PacsError
from .urls import SeriesRef, is_url, parse_series_url

Progress = Callable[[int, int], object] | None


def resolve_scan(path_or_url, progress: Progress = None, cancel: Callable[[], bool] | None = None, *,
                 cache: SeriesCache | None = None, client=None, notes: list[str] | None = None) -> str:
    """A local path for ``path_or_url``: paths as they are, series URLs retrieved (or reused
    from the cache). ``progress(done, total)`` counts instances; ``cancel()`` stops it."""
    if not is_url(path_or_url):
        return os.fspath(path_or_url)
    entry = fetch_series(parse_series_url(path_or_url), progress, cancel, cache=cache, client=client,
                         notes=notes)
    return str(entry.folder)


def fetch_series(ref: SeriesRef, progress: Progress = None, cancel: Callable[[], bool] | None = None, *,
                 cache: SeriesCache | None = None, client=None, notes: list[str] | None = None) -> CachedSeries:
    """The cached copy of ``ref``, retrieving it first when it is absent or out of date."""
    from .client import PacsClient

    cache = cache or SeriesCache()
    notes = notes if notes is not None else []
    _check(cancel)
    client = client or PacsClient(ref.service)
    cached = cache.lookup(ref)
    try:
        expected = client.instance_uids(ref.study, ref.series)
    except PacsError as exc:
        if exc.unreachable and cached is not None:
            cache.touch(cached)
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cached.retrieved))
            notes.append(f"the server is unreachable; opened the copy retrieved on {when}")
            return cached
        raise PacsError(ref.url, exc.reason, exc.hint, exc.status, exc.unreachable) from None
    if not expected:
        raise PacsError(ref.url, "the server lists no instances in this series",
                        hint="check the study and series UIDs in the URL")
    if cached is not None and set(cached.instances) == set(expected):
        cache.touch(cached)
        notes.append(f"opened the cached copy of the series ({len(expected)} instances)")
        return cached
    entry = _retrieve(ref, client, cache, expected, progress, cancel)
    notes.append(f"retrieved {len(entry.instances)} instances from {ref.service}")
    return entry


def _retrieve(ref: SeriesRef, client, cache: SeriesCache, expected: list[str], progress: Progress,
              cancel) -> CachedSeries:
    total = len(expected)
    wanted = set(expected)
    received: list[str] = []
    seen: set[str] = set()
    with cache.writing(ref) as tmp:
        if progress:
            progress(0, total)
        stream = client.iter_series(ref.study, ref.series)
        try:
            for ds in stream:
                _check(cancel)
                uid = _sop_uid(ds)
                if not uid or uid in seen or uid not in wanted:
                    continue  # a duplicate, or an instance added after the listing (next open)
                _write_instance(tmp / f"{uid}.dcm", ds, ref)
                received.append(uid)
                seen.add(uid)
                if progress:
                    progress(len(received), total)
        except PacsError as exc:
            raise PacsError(ref.url, f"{exc.reason} after {len(received)} of {total} instances",
                            exc.hint, exc.status, exc.unreachable) from None
        finally:
            stream.close()
        _check(cancel)
        if len(received) != total:
            missing = total - len(received)
            raise PacsError(ref.url, f"incomplete retrieve: the server sent {len(received)} of the "
                            f"{total} instances it lists ({missing} missing)",
                            hint="try again; nothing incomplete was kept (a PACS still receiving the "
                            "series can answer like this)")
        return cache.commit(tmp, ref, received)


def _sop_uid(ds) -> str:
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
    return uid


def _write_instance(path, ds, ref: SeriesRef) -> None:
    try:
        ds.save_as(path, enforce_file_format=True)
    except OSError as exc:
        raise PacsError(ref.url, f"cannot write the retrieved instance into the cache "
                        f"({exc.strerror or exc}: {path})", hint="check the free disk space") from None
    except Exception as exc:  # noqa: BLE001 - pydicom refusing a malformed instance
        raise PacsError(ref.url, f"the server sent an instance that cannot be stored "
                        f"({type(exc).__name__}: {exc})") from None


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("the retrieve was cancelled")


def series_checksum(url: str, client=None) -> str:
    """An identity for a series on a server: SHA-256 over its URL and sorted SOP Instance UIDs
    (DICOM never changes an instance under the same UID). Used by batch runs to resume."""
    from .client import PacsClient

    ref = parse_series_url(url)
    client = client or PacsClient(ref.service)
    try:
        uids = sorted(client.instance_uids(ref.study, ref.series))
    except PacsError as exc:
        raise PacsError(ref.url, exc.reason, exc.hint, exc.status, exc.unreachable) from None
    if not uids:
        raise PacsError(ref.url, "the server lists no instances in this series")
    h = hashlib.sha256(ref.url.encode())
    for uid in uids:
        h.update(b"\0" + uid.encode())
    return h.hexdigest()


def load_series_url(url: str, series=None, progress: Progress = None, cancel=None,
                    cache: SeriesCache | None = None):
    """`medplib_core.load` for a series URL: retrieve (or reuse), then load the folder."""
    from ..io.loader import load

    ref = parse_series_url(url)
    if series not in (None, "", 0, ref.series):
        raise LoadError(url, f"the URL names series {ref.series}, not {series}")
    notes: list[str] = []

    def fetched(done: int, total: int) -> None:
        if progress:
            progress(int(500 * done / max(total, 1)), 1000)

    def loaded(done: int, total: int) -> None:
        if progress:
            progress(500 + int(500 * done / max(total, 1)), 1000)

    try:
        entry = fetch_series(ref, fetched, cancel, cache=cache, notes=notes)
    except (PacsError, CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: a bad server never escapes as a crash
        raise PacsError(ref.url, f"unexpected {type(exc).__name__}: {exc}") from exc
    try:
        vol = load(str(entry.folder), progress=loaded, cancel=cancel)
    except CancelledError:
        raise
    except LoadError as exc:
        raise LoadError(ref.url, exc.reason, exc.hint) from None
    if vol.source is not None:
        vol.source.path = ref.url
        vol.source.notes = notes + list(vol.source.notes)
    return vol
