"""PACS faults against a real Orthanc: each a clear message, nothing half-cached."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import requests

from medplib_core import load
from medplib_core.errors import CancelledError
from medplib_core.pacs import PacsError, parse_series_url
from medplib_core.pacs.cache import PARTIAL, SeriesCache
from medplib_core.pacs.client import PacsClient
from medplib_core.pacs.credentials import Credentials, forget, remember

from conftest import REPO
from cut_proxy import CutProxy
from orthanc_server import PASSWORD, USER, free_port, upload_series


def _nothing_cached(url: str) -> None:
    cache = SeriesCache()
    assert cache.lookup(parse_series_url(url)) is None
    assert not cache.folder_for(parse_series_url(url)).exists()
    partial = cache.root / PARTIAL
    assert not partial.exists() or not any(partial.iterdir())


def _via(port: int, url: str) -> str:
    """The same series URL, reached through another port on 127.0.0.1."""
    ref = parse_series_url(url)
    return f"http://127.0.0.1:{port}/dicom-web/studies/{ref.study}/series/{ref.series}"


@pytest.fixture
def fresh_ct5(orthanc, pacs_series, tmp_path):
    """A copy of pydicom's 5-slice CT under new UIDs, for a test that changes it on the server."""
    return upload_series(orthanc, "ct5-copy", pacs_series["ct5"]["files"], tmp_path / "ct5-copy", new_uids=True)


def test_server_down(pacs, pacs_series):
    url = _via(free_port(), pacs_series["ct5"]["url"])
    with pytest.raises(PacsError) as e:
        load(url)
    msg = str(e.value)
    assert msg.startswith(url) and "cannot connect: the server is down or unreachable" in msg
    assert "PACS is running" in e.value.hint
    _nothing_cached(url)


def test_server_down_from_the_cli_is_one_line_without_traceback(pacs, pacs_series, tmp_path):
    url = _via(free_port(), pacs_series["ct5"]["url"])
    env = dict(os.environ, MEDPLIB_PACS_CACHE=str(tmp_path / "c"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "info", url, "--json"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"error: {url}: ") and "cannot connect" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("creds", [Credentials("basic", USER, "not-the-password"),
                                   Credentials("bearer", secret="a-token-orthanc-does-not-know"),
                                   Credentials()])
def test_wrong_credentials(pacs, pacs_series, creds):
    url = pacs_series["ct5"]["url"]
    remember(pacs.dicomweb, creds)
    with pytest.raises(PacsError) as e:
        load(url)
    msg = str(e.value)
    assert "refused the credentials (HTTP 401" in msg and e.value.status == 401
    assert "MEDPLIB_DICOMWEB_USER" in e.value.hint
    assert (creds.secret or "\0") not in msg and (creds.username or "\0") not in msg
    _nothing_cached(url)


def test_a_series_with_a_missing_slice_loads_like_the_local_folder(pacs, pacs_series):
    s = pacs_series["ct_gap"]
    remote, local = load(s["url"]), load(s["folder"])
    assert np.array_equal(remote.array, local.array) and remote.spacing == local.spacing
    gap = [n for n in local.source.notes if n.startswith("gap(s) in the series")]
    assert gap and gap[0] in remote.source.notes


def test_an_instance_removed_during_the_retrieve(pacs, fresh_ct5):
    """The server lists 5 instances, then one is deleted before the transfer: 4 arrive."""
    url = fresh_ct5["url"]
    victim = requests.post(f"{pacs.url}/tools/lookup", data=_sop(fresh_ct5["files"][2]), auth=pacs.auth,
                           timeout=10).json()[0]["Path"]

    def progress(done, total):
        if done == 0:
            requests.delete(f"{pacs.url}{victim}", auth=pacs.auth, timeout=10).raise_for_status()

    with pytest.raises(PacsError) as e:
        load(url, progress=progress)
    assert "incomplete retrieve: the server sent 4 of the 5 instances it lists (1 missing)" in str(e.value)
    assert "nothing incomplete was kept" in e.value.hint
    _nothing_cached(url)
    vol = load(url)  # the next open lists 4 and retrieves them
    assert vol.shape[0] == 4


def _sop(path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_a_transfer_cut_mid_way(pacs, pacs_series, shared_data):
    s = pacs_series["ct_j2k"]
    total = sum(f.stat().st_size for f in s["files"])
    with CutProxy(pacs.port, cut_after=total // 2) as proxy:
        url = _via(proxy.port, s["url"])
        remember(parse_series_url(url).service, Credentials("basic", USER, PASSWORD))
        try:
            with pytest.raises(PacsError) as e:
                load(url)
        finally:
            forget(parse_series_url(url).service)
    assert proxy.cuts >= 1
    msg = str(e.value)
    assert msg.startswith(url) and "the transfer was interrupted" in msg
    assert " of 20 instances" in msg and "after 20 of" not in msg
    _nothing_cached(url)


def test_cancel_mid_way_keeps_nothing(pacs, pacs_series):
    s = pacs_series["ct5"]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        load(s["url"], cancel=cancel)
    _nothing_cached(s["url"])


def test_unreachable_server_falls_back_to_a_complete_cached_copy(pacs, pacs_series):
    s = pacs_series["ct_small"]
    with CutProxy(pacs.port, cut_after=1 << 30) as proxy:
        url = _via(proxy.port, s["url"])
        service = parse_series_url(url).service
        remember(service, Credentials("basic", USER, PASSWORD))
        first = load(url)
    try:
        again = load(url)  # the proxy is gone: connection refused
    finally:
        forget(service)
    assert np.array_equal(first.array, again.array)
    assert any("server is unreachable; opened the copy retrieved on" in n for n in again.source.notes)


def test_ping_names_the_server_and_reason(pacs):
    assert PacsClient(pacs.dicomweb).ping() >= 0
    with pytest.raises(PacsError, match=r"not found on the server \(HTTP 404\)"):
        PacsClient(pacs.url + "/not-dicomweb", Credentials("basic", USER, PASSWORD)).ping()


def test_a_bearer_token_is_accepted_through_a_token_gateway(pacs, pacs_series):
    """A site that uses tokens (a gateway in front of the PACS): the series loads with the
    bearer credentials, equal to the local files, the token went with every request, and a
    stale token gets the 401 message without the token in it."""
    from bearer_proxy import BearerGateway

    token = "t0ken-for-the-gateway"
    with BearerGateway(pacs.url, token, (USER, PASSWORD)) as gw:
        url = _via(gw.port, pacs_series["ct5"]["url"])
        remember(gw.dicomweb, Credentials("bearer", secret=token))
        try:
            vol = load(url)
            local = load(pacs_series["ct5"]["folder"])
            np.testing.assert_array_equal(vol.array, local.array)
            np.testing.assert_allclose(vol.affine_lps, local.affine_lps, atol=1e-6)
            assert gw.seen and all(h == f"Bearer {token}" for _, h in gw.seen)
            stale = "an-expired-token"
            remember(gw.dicomweb, Credentials("bearer", secret=stale))
            url2 = _via(gw.port, pacs_series["mr_small"]["url"])
            with pytest.raises(PacsError) as e:
                load(url2)
            assert e.value.status == 401 and stale not in str(e.value)
            _nothing_cached(url2)
        finally:
            forget(gw.dicomweb)
