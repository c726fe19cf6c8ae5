"""The HTTP API of a real server: the token, versions, malformed requests, limits, and
property-based tests (schemathesis against /openapi.json; hypothesis prompts on a real slice)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, ignored_auth, negative_data_rejection, response_schema_conformance,
    status_code_conformance)

from medplib_core.engines.remote_http import Connection, EngineAuthError, EngineVersionError
from medplib_core.server import wire

from test_server_support import TOKEN, ct_slice, demo_paths, engine_server, remote  # noqa: F401

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection, ignored_auth]


@pytest.fixture(scope="module")
def http(engine_server):
    with httpx.Client(base_url=engine_server.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def ct_id(engine_server, pydicom_ct_path, http):
    image = ct_slice(pydicom_ct_path)
    http.post("/v1/images", json=wire.image_payload(image)).raise_for_status()
    return wire.image_id(image)


def test_token_is_needed_except_for_health_and_schema(engine_server):
    with httpx.Client(base_url=engine_server.url, timeout=30) as c:
        assert c.get("/health").json()["api_version"] == "1"
        assert c.get("/openapi.json").json()["openapi"].startswith("3.")
        for method, path in (("GET", "/info"), ("GET", "/v1/stats"), ("GET", "/v1/images/" + "0" * 64),
                             ("POST", "/v1/engines/litemedsam/predict"), ("POST", "/v1/conversations")):
            r = c.request(method, path, json={})
            assert r.status_code == 401, path
            assert r.json()["error"] == "unauthorized" and r.headers["WWW-Authenticate"] == "Bearer"
        assert c.get("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with pytest.raises(EngineAuthError, match="token is wrong.*MEDPLIB_SERVER_TOKEN"):
        Connection(engine_server.url, token="wrong")
    with pytest.raises(EngineAuthError, match="no bearer token"):
        Connection(engine_server.url, token="")


def test_info_names_versions_checksums_and_device(http):
    info = http.get("/info").json()
    assert info["api_version"] == "1" and info["server_version"]
    keys = {e["key"]: e for e in info["engines"]}
    assert set(keys) == {"litemedsam", "medplib"}
    assert len(keys["litemedsam"]["weights_sha256"]) == 64 and "cpu" in keys["litemedsam"]["device"]
    assert "chat" in keys["medplib"]["capabilities"]


def test_api_version_mismatch_names_both_versions(engine_server, http):
    with pytest.raises(EngineVersionError, match="speaks engine API 1 .*this client speaks API 0"):
        Connection(engine_server.url, token=TOKEN, api_version="0")
    r = http.get("/info", headers={"X-Medplib-API": "7"})
    assert r.status_code == 400 and r.json()["error"] == "api_version_mismatch"
    assert "API 1" in r.json()["detail"] and "API 7" in r.json()["detail"]


def test_malformed_requests_name_the_field(http, ct_id):
    r = http.post("/v1/engines/litemedsam/predict", json={"image": ct_id, "prompt": {"box": [1, 2, "x", 4]}})
    assert r.status_code == 422 and r.json()["field"] == "prompt.box[2]"
    r = http.post("/v1/engines/litemedsam/predict", json={"image": ct_id, "prompt": {"box": [90, 90, 10, 10]}})
    assert r.status_code == 400 and "inverted" in r.json()["detail"]
    r = http.post("/v1/images", json={"id": "0" * 64, "shape": [4, 4], "data": "not base64!"})
    assert r.status_code == 400 and r.json()["field"] == "data"
    r = http.post("/v1/images", json={"id": "0" * 64, "shape": [4, 4], "data": wire.pack_array(np.zeros(16, np.uint8))})
    assert r.status_code == 400 and r.json()["field"] == "id"
    r = http.post("/v1/engines/litemedsam/predict", json={"image": "1" * 64, "prompt": {"box": [1, 2, 3, 4]}})
    assert r.status_code == 404 and r.json()["error"] == "image_unknown"
    r = http.post("/v1/engines/litemedsam/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = http.post("/v1/conversations", json={"image": ct_id, "engine": "litemedsam"})
    assert r.status_code == 400 and r.json()["field"] == "engine"


def test_upload_limits_answer_413(http):
    big = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)  # 12 MiB raw
    r = http.post("/v1/images", json=wire.image_payload(big))
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    # a small body that claims a huge image is refused before inflating
    r = http.post("/v1/images", json={"id": "0" * 64, "shape": [60000, 60000, 3], "data": wire.pack_array(np.zeros(1, np.uint8))})
    assert r.status_code == 413 and r.json()["field"] == "data"


@pytest.fixture(scope="module")
def api_schema(engine_server):
    return schemathesis.openapi.from_url(f"{engine_server.url}/openapi.json")


def test_openapi_schema_holds_and_no_server_error(api_schema):
    """Every operation, with valid and invalid data generated from /openapi.json: no 5xx,
    only documented statuses, bodies matching their schemas, invalid data refused, auth kept."""
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 15
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no parameters)


coord = st.floats(-50, 180, allow_nan=False)
prompts = st.one_of(
    st.fixed_dictionaries({"box": st.tuples(coord, coord, coord, coord)}),
    st.fixed_dictionaries({"points": st.lists(st.tuples(coord, coord), min_size=1, max_size=3),
                           "point_labels": st.lists(st.sampled_from([0, 1]), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"polygon": st.lists(st.tuples(coord, coord), min_size=3, max_size=6)}),
    st.fixed_dictionaries({"box": st.tuples(coord, coord, coord, coord),
                           "points": st.lists(st.tuples(coord, coord), min_size=1, max_size=2),
                           "point_labels": st.lists(st.just(0), min_size=1, max_size=2)}),
)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(prompt=prompts)
def test_random_prompts_on_a_real_slice_never_fail_the_server(http, ct_id, prompt):
    r = http.post("/v1/engines/litemedsam/predict", json={"image": ct_id, "prompt": prompt})
    assert r.status_code in (200, 400), r.text
    body = r.json()
    if r.status_code == 200:
        mask = wire.mask_from_payload(body["mask"], "mask")
        assert mask.shape == (128, 128) and 0.0 <= body["score"] <= 1.5
    else:
        assert body["error"] == "invalid_prompt" and body["detail"]
