"""The server's parts on real threads and real data: lanes (priority, limits, turn-taking),
the pixel store (caps, LRU, expiry), the wire format, and conversation bounds and expiry on an
`EngineHost` holding the tiny MedPLIB."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from medplib_core.server import wire
from medplib_core.server.config import Limits, ServerConfig
from medplib_core.server.lanes import BACKGROUND, ENCODE, INTERACTIVE, Busy, ClientCounter, GenerationLane, SegmentationLane
from medplib_core.server.store import PixelStore

from test_medplib_support import test_image, tiny_demo  # noqa: F401


def test_segmentation_lane_runs_the_most_urgent_first_and_bounds_its_queue():
    lane = SegmentationLane(queue_limit=3)
    gate, order = threading.Event(), []
    lane.submit(gate.wait, INTERACTIVE)  # occupies the worker
    futs = [lane.submit(lambda: order.append("prop"), BACKGROUND),
            lane.submit(lambda: order.append("encode"), ENCODE),
            lane.submit(lambda: order.append("click"), INTERACTIVE)]
    with pytest.raises(Busy) as err:
        lane.submit(lambda: None, INTERACTIVE)
    assert err.value.status == 503 and err.value.retry_after == 1
    assert lane.interactive_pending
    gate.set()
    for f in futs:
        f.result(10)
    assert order == ["click", "encode", "prop"] and not lane.interactive_pending
    lane.submit(gate.wait, INTERACTIVE)
    dropped = [lane.submit(lambda: order.append("x"), BACKGROUND, "pre:c1") for _ in range(3)]
    assert lane.drop("pre:c1") == 3 and all(f.cancelled() for f in dropped)
    exc = lane.submit(lambda: 1 / 0).exception(10)
    assert isinstance(exc, ZeroDivisionError)  # a failing job is handed back, the lane lives on
    assert lane.submit(lambda: 7).result(10) == 7
    lane.close()


def test_generation_lane_takes_turns_per_token_and_pauses_for_clicks():
    clicks = threading.Event()
    lane = GenerationLane(max_jobs=2, yield_to=clicks.is_set)
    order: list[str] = []

    def job(name):
        def run(step):
            for _ in range(5):
                order.append(name)
                step()
            return name
        return run

    gate = threading.Event()

    def first(step):
        gate.wait(10)  # holds the turn until the second job waits for it
        return job("a")(step)

    fa = lane.submit(first)
    fb = lane.submit(job("b"))
    with pytest.raises(Busy):
        lane.submit(job("c"))
    time.sleep(0.2)
    gate.set()
    assert (fa.result(10), fb.result(10)) == ("a", "b")
    assert order[:4] == ["a", "b", "a", "b"], order  # round-robin, one token each
    clicks.set()
    t0 = time.monotonic()
    f = lane.submit(lambda step: step())
    time.sleep(0.3)
    clicks.clear()
    f.result(10)
    assert time.monotonic() - t0 >= 0.3  # waited while the segmentation lane had a click
    cancel = threading.Event()
    cancel.set()
    assert lane.submit(lambda step: step(), cancel.is_set).result(10) is True
    lane.close()


def test_client_counter_answers_429():
    c = ClientCounter(limit=2)
    c.enter("a")
    c.enter("a")
    with pytest.raises(Busy) as err:
        c.enter("a")
    assert err.value.status == 429
    c.enter("b")
    c.leave("a")
    c.enter("a")


def test_pixel_store_caps_lru_and_expiry():
    s = PixelStore(client_cap=300, server_cap=500, ttl_s=60)
    assert s.put("image", "a1", "A1", 100, "a") and not s.put("image", "a1", "A1", 100, "a")
    s.put("image", "a2", "A2", 100, "a")
    s.put("image", "a3", "A3", 100, "a")
    s.get("image", "a1")  # a1 is now the most recent
    s.put("image", "a4", "A4", 100, "a")  # over a's cap: its least recently used (a2) goes
    assert s.has("image", "a1") and not s.has("image", "a2") and s.has("image", "a4")
    s.put("image", "b1", "B1", 200, "b")  # 500 in all: at the server cap, nothing goes
    s.put("image", "b2", "B2", 100, "b")  # over the server cap: the oldest item of anyone goes
    assert not s.has("image", "a3") and s.stats()["bytes"] <= 500
    with pytest.raises(Busy) as err:
        s.put("volume", "huge", "H", 301, "a")
    assert err.value.status == 413
    n = s.stats()["items"]
    assert n == 4 and s.expire(now=time.monotonic() + 30) == 0
    assert s.expire(now=time.monotonic() + 61) == n and s.stats()["items"] == 0


def test_wire_round_trips_and_refuses_bad_payloads():
    rng = np.random.default_rng(1)
    for shape in ((5, 7), (3, 17, 9), (1, 1)):
        m = rng.random(shape) > 0.5
        assert np.array_equal(wire.mask_from_payload(wire.mask_payload(m), "m"), m)
    img = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    body = wire.image_payload(img)
    assert np.array_equal(wire.image_from_payload(body, 10**6), img)
    assert body["id"] != wire.image_id(img[:, :, 0].copy())
    with pytest.raises(wire.WireError, match="id"):
        wire.image_from_payload(dict(body, id="0" * 64), 10**6)
    with pytest.raises(wire.WireError) as err:  # a zip bomb is not inflated past the limit
        wire.image_from_payload({"id": body["id"], "shape": [4000, 4000, 3],
                                 "data": wire.pack_array(np.zeros(48_000_000, np.uint8))}, 10**6)
    assert err.value.status == 413
    with pytest.raises(wire.WireError, match="bytes"):
        wire.image_from_payload(dict(body, shape=[20, 31, 3]), 10**6)
    from medplib_core.volume import Volume

    vol = Volume(rng.integers(-1000, 1000, (4, 6, 5)).astype(np.int16), spacing=(0.7, 0.7, 2.5),
                 origin=(1, 2, 3), direction=np.diag([1.0, -1.0, 1.0]), window=(40, 400))
    back = wire.volume_from_payload(wire.volume_payload(vol), 10**6)
    assert np.array_equal(back.array, vol.array) and back.spacing == vol.spacing
    assert np.array_equal(back.direction, vol.direction) and back.window == (40, 400)


def test_conversations_are_bounded_and_expire(tiny_demo):
    from medplib_core.engines.medplib_engine import MedplibEngine
    from medplib_core.server.host import EngineHost, Unknown

    cfg = ServerConfig(engines=("medplib",), limits=Limits(client_conversations=2, session_ttl_s=60))
    host = EngineHost(cfg, engines={"medplib": MedplibEngine(tiny_demo)})
    try:
        img = test_image(40, 50)
        ident = wire.image_id(img)
        host.put_image(ident, img, "c1")
        convs = [host.conversations.create("c1", "medplib", ident, None, []).result(60) for _ in range(3)]
        with pytest.raises(Unknown):
            host.conversations.get(convs[0].id)  # the least recently used of c1's went
        host.conversations.get(convs[2].id)
        other = host.conversations.create("c2", "medplib", ident, None, []).result(60)
        assert host.conversations.count() == 3
        turn = host.conversations.ask(other, "What is this?", [], None, lambda d: None).result(60)
        # the reference loop's cache belongs to the conversation; the fast path's rows are
        # the scheduler's, allocated once, so they count for no conversation
        assert turn.text and (other.kv_bytes() > 0) == (turn.provenance["decoder"] == "reference")
        for c in convs[1:] + [other]:
            c.used -= 61
        assert host.expire()["conversations"] == 3 and host.conversations.count() == 0
    finally:
        host.close()


def test_medplib_predicts_and_answers_at_once_all_finish(tiny_demo):
    """Grounding predicts hold MedPLIB's model lock and never hand their turn on; answers do.
    Mixed at once they all complete (no lock held across a turn hand-on)."""
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.medplib_engine import MedplibEngine
    from medplib_core.server.host import EngineHost

    host = EngineHost(ServerConfig(engines=("medplib",)), engines={"medplib": MedplibEngine(tiny_demo)})
    try:
        img = test_image(40, 50, seed=5)
        ident = wire.image_id(img)
        host.put_image(ident, img, "c")
        convs = [host.conversations.create("c", "medplib", ident, None, []).result(60) for _ in range(2)]
        futs = [host.conversations.ask(c, "Describe it.", [], {"forced_answer": "liver " * 40}, lambda d: None)
                for c in convs]
        futs += [host.predict("medplib", ident, Prompt(text="liver")) for _ in range(3)]
        done = [f.result(120) for f in futs]
        assert all(t.text.startswith("liver") for t in done[:2])
        assert all(r.mask.shape == (40, 50) for r in done[2:])
    finally:
        host.close()


def test_engine_location_from_settings_environment_and_session(monkeypatch):
    from medplib_core.server import location as loc_mod
    from medplib_core.server.location import LOCATION_KEY, PROCESS_KEY, URL_KEY, EngineLocation

    class Prefs(dict):
        def set(self, key, value):
            self[key] = value

    monkeypatch.setattr(loc_mod, "_keyring_get", lambda url: None)  # never the user's keyring
    monkeypatch.setattr(loc_mod, "_session_tokens", {})
    prefs = Prefs()
    loc = EngineLocation.from_settings(prefs, env={})
    assert (loc.where, loc.medplib_process, loc.problems()) == ("local", True, [])
    prefs.update({LOCATION_KEY: "server", URL_KEY: "gpu-box:8765/", PROCESS_KEY: "false"})
    loc = EngineLocation.from_settings(prefs, env={})
    assert loc.remote and not loc.medplib_process and len(loc.problems()) == 2  # scheme, token
    loc = EngineLocation("server", "https://gpu-box:8765", "s3cret", "dialog")
    monkeypatch.setattr("medplib_core.pacs.credentials.keyring_status", lambda: (False, "none here"))
    assert loc.save(prefs) == "session" and prefs[URL_KEY] == "https://gpu-box:8765"
    again = EngineLocation.from_settings(prefs, env={})
    assert (again.token, again.token_source, again.problems()) == ("s3cret", "session", [])
    assert "s3cret" not in repr(again)
    env = {"MEDPLIB_SERVER_TOKEN": "from-env", "MEDPLIB_SERVER_URL": "http://10.0.0.5:8765"}
    over = EngineLocation.from_settings(Prefs(), env=env)
    assert (over.where, over.url, over.token, over.token_source) == ("server", "http://10.0.0.5:8765",
                                                                      "from-env", "environment")
