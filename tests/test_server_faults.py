"""Faults: the server is SIGKILLed in the middle of a streamed answer; the client raises one
clear error, reconnects when the server is back, uploads again what it needs, and rebuilds the
conversation from the turns it holds. This server speaks HTTPS (--tls-cert/--tls-key)."""

from __future__ import annotations

import time

import pytest

from medplib_core.engines.base import Prompt
from medplib_core.engines.remote_http import Connection, EngineConnectionError

from test_medplib_support import test_image
from test_server_support import ServerProcess, demo_paths, remote, self_signed_cert, tiny_args  # noqa: F401

LONG = "liver " * 400


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(demo_paths, tls, monkeypatch_module):
    monkeypatch_module.setenv("MEDPLIB_SERVER_CA", str(tls[0]))  # what a client of this server sets
    srv = ServerProcess(["--engine", "medplib", "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]),
                         *tiny_args(demo_paths)]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_https_only_with_the_certificate(server, tls):
    assert server.url.startswith("https://127.0.0.1:")
    assert Connection(server.url, token=server.token).info["api_version"] == "1"
    with pytest.raises(EngineConnectionError, match="cannot reach"):
        Connection(server.url, token=server.token, verify=True)  # the system CAs do not know it
    with pytest.raises(EngineConnectionError):
        Connection(server.url.replace("https:", "http:"), token=server.token)


def test_no_server_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineConnectionError, match="cannot reach the engine server .* is `medplib-studio serve` running"):
        Connection(f"http://127.0.0.1:{port}", token="x")


def test_sigkill_mid_answer_then_recovery(server):
    image = test_image(64, 80, seed=3)
    eng = remote(server, "medplib")
    sess = eng.encode(image)
    chat = sess.chat()
    first = chat.ask("Could you segment the liver?")
    got: list[str] = []

    def on_token(delta: str) -> None:
        got.append(delta)
        if len(got) == 5:
            server.kill()  # like a crash or the OOM killer, in the middle of the stream

    started = time.monotonic()
    with pytest.raises(EngineConnectionError, match="engine connection lost"):
        chat.ask("Describe it.", on_token=on_token, generation={"forced_answer": LONG})
    assert time.monotonic() - started < 30 and len(got) >= 5
    with pytest.raises(EngineConnectionError, match="engine connection lost"):
        sess.predict(Prompt(text="liver"))  # while it is down: the same clear error, at once

    server.start()  # back on the same port, knowing nothing
    res = sess.predict(Prompt(text="liver"))  # the client uploads the slice again by itself
    assert res.mask.shape == (64, 80) and res.provenance["answer"] == first.text
    assert eng.conn.request("GET", "/v1/stats")["store"]["uploads"] == 1
    turn = chat.ask("And the kidney?")  # the conversation is rebuilt from the finished turn
    assert turn.provenance["turn"] == 1 and turn.text == first.text
    assert [t.question for t in chat.turns] == ["Could you segment the liver?", "And the kidney?"]
    assert eng.conn.connects == 2
    eng.close()
