"""Chat through a real `medplib-studio serve` (tiny MedPLIB checkpoint): streamed answers equal
to in-process ones, KV-cache reuse of follow-ups, cancel, fair sharing between concurrent
answers, a lost conversation rebuilt from history, and `medplib ask --server`."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from medplib_core.errors import CancelledError, PromptError
from medplib_core.medplib.chat import ChatSession, ChatSettings
from medplib_core.medplib.generation import GenerationSettings

from test_medplib_support import test_image, tiny_demo  # noqa: F401
from test_server_support import demo_paths, engine_server, remote  # noqa: F401

LONG = "liver " * 300  # a teacher-forced answer of a few hundred tokens


@pytest.fixture(scope="module")
def image():
    return test_image(72, 100)


@pytest.fixture(scope="module")
def medplib(engine_server):
    eng = remote(engine_server, "medplib")
    yield eng
    eng.close()


def test_streamed_answer_equals_local(medplib, tiny_demo, image):
    local = ChatSession(tiny_demo, image)
    chat = medplib.encode(image).chat()
    deltas: list[str] = []
    q1, regions = "Could you segment the liver at the area <region>?", [(20, 10, 60, 40)]
    r1 = chat.ask(q1, regions=regions, on_token=deltas.append)
    l1 = local.ask(q1, regions=regions)
    assert r1.text == l1.text == "The liver <SEG> ." and "".join(deltas) == r1.text and len(deltas) >= 3
    assert r1.grounded and np.array_equal(r1.masks[0], l1.masks[0])
    assert r1.scores == pytest.approx(l1.scores, abs=1e-5)
    assert r1.provenance["answer_ids"] == l1.provenance["answer_ids"]
    assert r1.provenance["weights_sha256"] == l1.provenance["weights_sha256"]
    # the follow-up reuses the conversation's KV cache on the server, as it does locally
    r2, l2 = chat.ask("And the spleen?"), local.ask("And the spleen?")
    assert r2.provenance["prompt_positions_reused"] == l2.provenance["prompt_positions_reused"] > 0
    assert r2.provenance["turn"] == 1 and r2.text == l2.text
    assert len(chat.turns) == 2


def test_cancel_mid_answer_keeps_the_conversation(medplib, image):
    chat = medplib.encode(image).chat()
    chat.ask("What is this?")
    got: list[str] = []
    with pytest.raises(CancelledError) as err:
        chat.ask("Describe it.", on_token=got.append, cancel=lambda: len(got) >= 5,
                 generation={"forced_answer": LONG})
    assert err.value.partial_text.startswith("liver") and 5 <= len(got) < 200
    status = medplib.conn.request("GET", f"/v1/conversations/{chat._cid}")
    assert len(status["turns"]) == 1 and not status["busy"]
    assert chat.ask("What is this?").provenance["turn"] == 1


def test_concurrent_answers_take_turns(medplib, image):
    """A second answer starts streaming long before the first is done (round-robin per token)."""
    a, b = medplib.encode(image).chat(), medplib.encode(image).chat()
    times: dict[str, list[float]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def run(name, chat):
        try:
            chat.ask("Describe it.", on_token=lambda d: times[name].append(time.monotonic()),
                     generation={"forced_answer": LONG})
        except BaseException as exc:  # reported below
            errors.append(exc)

    ta = threading.Thread(target=run, args=("a", a))
    ta.start()
    while not times["a"] and ta.is_alive():
        time.sleep(0.005)
    tb = threading.Thread(target=run, args=("b", b))
    tb.start()
    ta.join(120)
    tb.join(120)
    assert not errors
    n = len(times["a"])
    first_b = times["b"][0]
    a_before_b = sum(1 for t in times["a"] if t < first_b)
    assert a_before_b < n / 2, f"{a_before_b} of {n} tokens of A came before B's first"
    assert times["a"][-1] > first_b


def test_lost_conversation_is_rebuilt_from_history(medplib, tiny_demo, image):
    chat = medplib.encode(image).chat()
    local = ChatSession(tiny_demo, image)
    chat.ask("Could you segment the liver?")
    local.ask("Could you segment the liver?")
    medplib.conn.request("DELETE", f"/v1/conversations/{chat._cid}")  # as expiry would
    r, l = chat.ask("And the kidney?"), local.ask("And the kidney?")
    assert r.provenance["turn"] == 1 and r.text == l.text
    assert r.provenance["prompt_positions_reused"] > 0


def test_unusable_question_is_a_prompt_error(medplib, image):
    chat = medplib.encode(image).chat()
    with pytest.raises(PromptError, match="question"):
        chat.ask("What is at <region> and <region>?", regions=[(10, 10)])
    with pytest.raises(PromptError, match="regions"):
        chat.ask("What is at <region>?", regions=[(900, 900)])
    assert chat.ask("What is this?").text  # the conversation still works


def test_medplib_ask_cli_with_server(engine_server, demo_paths, image, tmp_path, monkeypatch, capsys):
    from medplib_core.cli.main import main

    png = tmp_path / "slice.png"
    Image.fromarray(image).save(png)
    monkeypatch.setenv("MEDPLIB_SERVER_TOKEN", engine_server.token)
    q = "Could you segment the liver?"
    assert main(["medplib", "ask", str(png), q, "--server", engine_server.url, "--json",
                 "--mask-out", str(tmp_path / "remote.png")]) == 0
    remote_prov = json.loads(capsys.readouterr().out)
    assert main(["medplib", "ask", str(png), q, "--checkpoint", str(demo_paths.checkpoint),
                 "--clip", str(demo_paths.clip), "--sam", str(demo_paths.sam), "--device", "cpu",
                 "--json", "--mask-out", str(tmp_path / "local.png")]) == 0
    local_prov = json.loads(capsys.readouterr().out)
    assert remote_prov["answer"] == local_prov["answer"] and remote_prov["server"] == engine_server.url
    assert np.array_equal(np.array(Image.open(tmp_path / "remote.png")), np.array(Image.open(tmp_path / "local.png")))


def test_a_client_that_goes_away_cancels_its_answer(medplib, engine_server, image):
    import httpx

    sess = medplib.encode(image)
    conv = medplib.conn.request("POST", "/v1/conversations", {"image": sess.image_id})["conversation"]
    headers = {"Authorization": f"Bearer {engine_server.token}"}
    body = {"question": "Describe it.", "generation": {"forced_answer": LONG}}
    with httpx.stream("POST", f"{engine_server.url}/v1/conversations/{conv}/ask", json=body,
                      headers=headers, timeout=60) as r:
        tokens = 0
        for line in r.iter_lines():
            tokens += line.startswith("event: token")
            if tokens == 3:
                break  # hang up in the middle of the answer
    deadline = time.monotonic() + 20
    status = medplib.conn.request("GET", f"/v1/conversations/{conv}")
    while status["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
        status = medplib.conn.request("GET", f"/v1/conversations/{conv}")
    assert not status["busy"] and status["turns"] == []  # stopped, and rolled back like a cancel


def test_the_annotation_session_chats_and_segments_through_the_server(engine_server, demo_paths, tmp_path):
    """`AnnotationSession` code runs unchanged on remote engines: the same answer, grounded
    proposal and box proposal as with the engines in this process."""
    import medplib_core
    from medplib_core.annotation import PromptKind
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.registry import create_engine
    from medplib_core.session import AnnotationSession, ConversationCache, RegionKind, RegionRef
    from studio_support import stacked_ct

    scan = stacked_ct(tmp_path / "ct.nii.gz")
    local_medplib = create_engine({"name": "medplib", "checkpoint": str(demo_paths.checkpoint),
                                   "clip": str(demo_paths.clip), "sam": str(demo_paths.sam), "device": "cpu"})
    results = {}
    for name, medplib, lite in (("local", local_medplib, create_engine("litemedsam")),
                                ("remote", remote(engine_server, "medplib"), remote(engine_server))):
        s = AnnotationSession(medplib_core.load(scan), str(scan))
        s.add_label()
        s.segment(lite, Prompt(box=(30, 30, 90, 90)), "axial", 6, PromptKind.BOX)
        box_mask = s.proposal.record.mask.copy()
        s.accept()
        answer = s.chat.ask_now(medplib, ConversationCache(), ("axial", 6), "What is in <region>?",
                                [RegionRef(RegionKind.BOX, [45, 40, 74, 64])])
        results[name] = (box_mask, answer.text, s.proposal.record.kind, s.proposal.record.mask.copy())
        lite.close()
    (lb, lt, lk, lm), (rb, rt, rk, rm) = results["local"], results["remote"]
    assert np.array_equal(lb, rb) and lb.any()
    assert lt == rt and "liver" in rt and lk is rk is PromptKind.GROUNDING
    assert np.array_equal(lm, rm)


def test_custom_stop_strings_reach_the_server(medplib, tiny_demo, image):
    """Stop strings set by the client end the server's answer where they end the local one
    (they used to stay on the client, so the server decoded to its default stop)."""
    from medplib_core.engines.remote_chat import RemoteGeneration

    q = "Could you segment the liver at the area <region>?"
    regions = [(20, 10, 60, 40)]
    full = ChatSession(tiny_demo, image).ask(q, regions=regions)
    stop = GenerationSettings(stop_strings=("liver",))
    local = ChatSession(tiny_demo, image).ask(q, regions=regions, generation=stop)
    assert local.text == "The " and full.text.startswith(local.text + "liver")
    for gen in (stop, RemoteGeneration(stop_strings=("liver",))):
        got = medplib.encode(image).chat().ask(q, regions=regions, generation=gen)
        assert got.text == local.text
        assert got.provenance["answer_ids"] == local.provenance["answer_ids"]
    # refused by the schema, before anything is generated: an empty stop string
    from medplib_core.engines.remote_http import EngineRequestError

    with pytest.raises(EngineRequestError, match=r"generation\.stop_strings\[0\]: String should have at least 1"):
        medplib.encode(image).chat().ask(q, regions=regions, generation={"stop_strings": [""]})
