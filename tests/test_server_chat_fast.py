"""The engine server's chat on the fast decode path (what a GPU server runs), here on the CPU:
the server is started with MEDPLIB_CHAT_DECODER=fast and the chat tests of
test_server_chat.py run against it (streamed answers equal to the in-process reference loop,
cancel mid-answer, long teacher-forced answers, concurrent answers sharing the batch)."""

from __future__ import annotations

import pytest

from test_medplib_support import tiny_demo  # noqa: F401
from test_server_chat import (  # noqa: F401 - collected again here, against the fast server
    image, test_cancel_mid_answer_keeps_the_conversation, test_concurrent_answers_take_turns,
    test_streamed_answer_equals_local)
from test_server_support import ServerProcess, demo_paths, remote, tiny_args  # noqa: F401


@pytest.fixture(scope="module")
def medplib(demo_paths):  # noqa: F811
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDPLIB_CHAT_DECODER", "fast")
        srv = ServerProcess(["--engine", "medplib", *tiny_args(demo_paths)]).start()
    eng = remote(srv, "medplib")
    try:
        yield eng
    finally:
        eng.close()
        srv.stop()


def test_the_server_answers_on_the_fast_path(medplib, image):  # noqa: F811
    turn = medplib.encode(image).chat().ask("What is this?")
    assert turn.provenance["decoder"] == "fast" and turn.text
