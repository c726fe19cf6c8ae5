"""The replica router's choices (no Ray needed): content ids pick a stable replica, server-made
ids are learned from the replies that made them, and everything else is spread."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from medplib_core.server.ray_routing import Affinity, body_json, rendezvous
from medplib_core.server.wire import image_id


def _ids(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [image_id(rng.integers(0, 255, (16, 16), dtype=np.uint8)) for _ in range(n)]


def test_content_ids_spread_and_stay_put_when_a_replica_is_added():
    ids = _ids(400)
    two = [rendezvous(i, 2) for i in ids]
    assert min(Counter(two).values()) > 150  # both replicas get a fair share
    three = [rendezvous(i, 3) for i in ids]
    moved = sum(a != b for a, b in zip(two, three))
    assert all(b == 2 for a, b in zip(two, three) if a != b)  # ids only move to the new replica
    assert 90 < moved < 180


def test_every_request_about_an_image_goes_to_its_replica():
    aff = Affinity(3)
    ident = _ids(1)[0]
    want = rendezvous(ident, 3)
    routes = [
        aff.route("POST", "/v1/images", {"id": ident, "shape": [16, 16], "data": "..."}),
        aff.route("GET", f"/v1/images/{ident}", None),
        aff.route("POST", "/v1/engines/litemedsam/encode", {"image": ident}),
        aff.route("POST", "/v1/engines/litemedsam/predict", {"image": ident, "prompt": {}}),
        aff.route("GET", f"/v1/engines/litemedsam/cached/{ident}", None),
        aff.route("POST", "/v1/conversations", {"image": ident, "engine": "medplib"}),
    ]
    assert routes == [(want, None)] * len(routes)
    vol = _ids(2)[1]
    assert aff.route("POST", "/v1/engines/litemedsam/propagate", {"volume": vol})[0] == rendezvous(vol, 3)


def test_conversations_and_jobs_are_learned_from_their_replies():
    aff = Affinity(2)
    assert aff.route("POST", "/v1/conversations/abc/ask", {"question": "?"}) == (None, "conversations/abc")
    aff.learn("/v1/conversations", 1, 201, json.dumps({"conversation": "abc", "engine": "medplib"}).encode())
    aff.learn("/v1/engines/litemedsam/propagate", 0, 202, json.dumps({"job": "j1", "state": "running"}).encode())
    aff.learn("/v1/conversations", 0, 404, json.dumps({"conversation": "nope"}).encode())  # errors teach nothing
    assert aff.route("POST", "/v1/conversations/abc/ask", {"question": "?"}) == (1, "conversations/abc")
    assert aff.route("DELETE", "/v1/conversations/abc", None) == (1, "conversations/abc")
    assert aff.route("GET", "/v1/jobs/j1", None) == (0, "jobs/j1")
    assert aff.route("GET", "/v1/conversations/nope", None) == (None, "conversations/nope")


def test_requests_naming_nothing_go_round_robin_and_bad_bodies_pass_through():
    aff = Affinity(2)
    assert [aff.route("GET", "/info", None)[0] for _ in range(4)] == [0, 1, 0, 1]
    assert body_json(b"{not json", "application/json") is None
    assert body_json(b'["a"]', "application/json") is None
    assert body_json(b'{"image": "x"}', "text/plain") is None
    ids = _ids(6)
    parts = aff.split(ids)
    assert sorted(i for part in parts.values() for i in part) == sorted(ids)
    assert all(rendezvous(i, 2) == r for r, part in parts.items() for i in part)
