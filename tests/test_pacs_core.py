"""PACS core without a server: series URLs, QIDO criteria, credentials, the series cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from medplib_core.errors import LoadError
from medplib_core.pacs import PacsError, is_series_url, is_url, parse_series_url, resolve_scan
from medplib_core.pacs.cache import MANIFEST, SeriesCache
from medplib_core.pacs.credentials import (Credentials, credentials_for, forget, keyring_status, remember,
                                           save_to_keyring)
from medplib_core.pacs.query import StudyQuery, date_range, series_filters
from medplib_core.pacs.urls import SeriesRef, normalise_service, redact

URL = "https://PACS.example.org:443/dicom-web/studies/1.2.840.1/series/1.2.840.1.2/"


def test_series_url_is_split_and_normalised():
    ref = parse_series_url(URL)
    assert ref == SeriesRef("https://pacs.example.org/dicom-web", "1.2.840.1", "1.2.840.1.2")
    assert ref.url == "https://pacs.example.org/dicom-web/studies/1.2.840.1/series/1.2.840.1.2"
    assert normalise_service("http://127.0.0.1:8042//dicom-web/") == "http://127.0.0.1:8042/dicom-web"
    assert is_url(URL) and is_series_url(URL)
    assert not is_url(Path("http:/x")) and not is_url("/data/ct") and not is_series_url("http://h/dicom-web")


@pytest.mark.parametrize("bad, words", [
    ("http://h/dicom-web/studies/1.2", "not a dicomweb series url"),
    ("http://h/dicom-web/studies/1.2/series/abc", "not a dicomweb series url"),
    ("http://h/dicom-web/studies/1.2/series/1.3?x=1", "not a dicomweb series url"),
    ("ftp://h/dicom-web/studies/1.2/series/1.3", "not a dicomweb url"),
    ("http:///studies/1.2/series/1.3", "names no host"),
])
def test_bad_series_urls_say_why(bad, words):
    with pytest.raises(PacsError) as e:
        parse_series_url(bad)
    assert words in str(e.value).lower()
    assert isinstance(e.value, LoadError)  # reported like any scan that cannot be opened


def test_credentials_in_a_url_are_refused_and_never_repeated():
    url = "https://alice:s3cret@pacs/dicom-web/studies/1.2/series/1.3"
    with pytest.raises(PacsError) as e:
        parse_series_url(url)
    assert "s3cret" not in str(e.value) and "MEDPLIB_DICOMWEB_PASSWORD" in str(e.value)
    assert redact(url) == "https://pacs/dicom-web/studies/1.2/series/1.3"


def test_local_paths_resolve_to_themselves(tmp_path):
    assert resolve_scan(tmp_path) == str(tmp_path)
    assert resolve_scan("relative/ct") == "relative/ct"


def test_study_query_filters():
    q = StudyQuery(patient_name="Doe^J", patient_id=" 42 ", accession="A7", date_from="2024-01-31",
                   date_to="20240315", modality="ct")
    assert q.filters() == {"PatientName": "Doe?J*", "PatientID": "42", "AccessionNumber": "A7",
                           "StudyDate": "20240131-20240315", "ModalitiesInStudy": "CT"}
    assert StudyQuery(patient_name="Do*").filters() == {"PatientName": "Do*"}
    assert StudyQuery().filters() == {}
    assert date_range("2024-02-01", None) == "20240201-" and date_range(None, "2024-02-01") == "-20240201"
    assert date_range("2024-02-01", "2024-02-01") == "20240201"
    with pytest.raises(PacsError, match="reversed"):
        date_range("2024-03-01", "2024-02-01")
    with pytest.raises(PacsError, match="not a valid date"):
        date_range("2024-02-30", None)
    with pytest.raises(PacsError, match="not a date"):
        StudyQuery(date_from="last week").filters()


def test_series_filters_check_keywords():
    assert series_filters({"Modality": ["CT", "MR"], "StudyDate": ["2024-01-01", "2024-06-30"]}) == \
        {"Modality": "CT,MR", "StudyDate": "20240101-20240630"}
    with pytest.raises(PacsError, match="not a DICOM keyword"):
        series_filters({"Modalty": "CT"})
    with pytest.raises(PacsError, match="mapping"):
        series_filters(["CT"])


def test_credentials_come_from_session_then_environment(monkeypatch):
    svc = "http://127.0.0.1:1/dicom-web"
    for var in ("MEDPLIB_DICOMWEB_TOKEN", "MEDPLIB_DICOMWEB_USER", "MEDPLIB_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    assert credentials_for(svc)[1] in ("none", "keyring")
    monkeypatch.setenv("MEDPLIB_DICOMWEB_USER", "bob")
    monkeypatch.setenv("MEDPLIB_DICOMWEB_PASSWORD", "pw")
    creds, where = credentials_for(svc)
    assert (creds.kind, creds.username, creds.secret, where) == ("basic", "bob", "pw", "environment")
    monkeypatch.setenv("MEDPLIB_DICOMWEB_TOKEN", "tok")
    assert credentials_for(svc)[0].kind == "bearer"
    remember(svc + "/", Credentials("basic", "carol", "x"))
    try:
        creds, where = credentials_for(svc)
        assert (creds.username, where) == ("carol", "session")
    finally:
        forget(svc)
    assert "tok" not in repr(Credentials("bearer", secret="tok"))
    with pytest.raises(PacsError, match="unknown authentication"):
        Credentials("kerberos")


def test_without_a_keyring_saving_says_so():
    ok, why = keyring_status()
    if ok:
        pytest.skip(f"this machine has a keyring backend ({why})")
    assert "keyring" in why
    with pytest.raises(PacsError) as e:
        save_to_keyring("http://127.0.0.1:1/dicom-web", Credentials("basic", "u", "secret-value"))
    assert "cannot save the credentials" in str(e.value) and "secret-value" not in str(e.value)
    assert "this session only" in e.value.hint


# ----- the series cache ----------------------------------------------------------------------------
def _fill(cache: SeriesCache, ref: SeriesRef, n: int, size: int) -> None:
    with cache.writing(ref) as tmp:
        uids = [f"{ref.series}.{i}" for i in range(n)]
        for u in uids:
            (tmp / f"{u}.dcm").write_bytes(os.urandom(size))
        cache.commit(tmp, ref, uids)


def test_cache_commits_whole_series_and_evicts_least_recently_used(tmp_path):
    cache = SeriesCache(tmp_path / "c", max_bytes=25_000)
    refs = [SeriesRef("http://h/dicom-web", "1.2", f"1.2.{i}") for i in range(3)]
    _fill(cache, refs[0], 2, 5000)
    _fill(cache, refs[1], 2, 5000)
    time.sleep(0.02)
    cache.touch(cache.lookup(refs[0]))  # refs[0] is now more recent than refs[1]
    _fill(cache, refs[2], 2, 5000)  # 30 kB > 25 kB: the least recently used goes
    assert cache.lookup(refs[1]) is None
    assert cache.lookup(refs[0]) is not None and cache.lookup(refs[2]) is not None
    assert cache.total_bytes() == 20_000
    assert not any((tmp_path / "c" / ".partial").iterdir())


def test_a_failed_download_leaves_nothing(tmp_path):
    cache = SeriesCache(tmp_path / "c")
    ref = SeriesRef("http://h/dicom-web", "1.2", "1.2.9")
    with pytest.raises(RuntimeError):
        with cache.writing(ref) as tmp:
            (tmp / "a.dcm").write_bytes(b"x" * 100)
            raise RuntimeError("cut")
    assert cache.lookup(ref) is None and not cache.folder_for(ref).exists()
    assert not any((tmp_path / "c" / ".partial").iterdir())


def test_a_damaged_cache_entry_is_not_trusted(tmp_path):
    cache = SeriesCache(tmp_path / "c")
    ref = SeriesRef("http://h/dicom-web", "1.2", "1.2.7")
    _fill(cache, ref, 3, 100)
    folder = cache.folder_for(ref)
    assert cache.lookup(ref) is not None
    next(p for p in folder.iterdir() if p.suffix == ".dcm").unlink()
    assert cache.lookup(ref) is None
    _fill(cache, ref, 3, 100)  # a fresh retrieve replaces it
    assert cache.lookup(ref) is not None
    (folder / MANIFEST).write_text(json.dumps({"service": "x"}))
    assert cache.lookup(ref) is None


def test_partials_of_dead_processes_are_cleaned(tmp_path):
    cache = SeriesCache(tmp_path / "c")
    stale = tmp_path / "c" / ".partial" / "999999999.abc.xyz"
    stale.mkdir(parents=True)
    (stale / "half.dcm").write_bytes(b"x")
    _fill(cache, SeriesRef("http://h/dicom-web", "1.2", "1.2.8"), 1, 10)
    assert not stale.exists()
