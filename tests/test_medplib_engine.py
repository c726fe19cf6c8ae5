"""MedPLIB as a segmentation engine, engine selection without weights, and the layout check."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.engines.base import Prompt
from medplib_core.engines.medplib_engine import (
    MedplibEngine, create_medplib_engine, grounding_question)
from medplib_core.errors import LoadError, PromptError
from medplib_core.medplib.chat import ChatSettings
from medplib_core.medplib.generation import GenerationSettings
from medplib_core.medplib.selection import MedplibSettings

from test_medplib_support import test_image, tiny, tiny_paths  # noqa: F401  (fixtures)


def _engine(loaded, answer="<SEG>"):
    return MedplibEngine(loaded, ChatSettings(generation=GenerationSettings(forced_answer=answer)))


def test_engine_text_prompt_gives_mask_with_provenance(tiny):
    eng = _engine(tiny)
    sess = eng.encode(test_image(72, 100))
    res = sess.predict(Prompt(text="liver"))
    assert res.mask.shape == (72, 100) and res.mask.dtype == bool
    assert res.provenance["engine"] == "MedPLIB" and res.provenance["answer"] == "<SEG>"
    assert res.provenance["model_question"] == "Could you segment out the liver in this image?"
    assert res.provenance["weights_sha256"].startswith("headers-sha256:")


def test_engine_region_prompts(tiny):
    sess = _engine(tiny).encode(test_image(72, 100))
    for prompt in (Prompt(box=(10, 10, 40, 30)), Prompt(points=[(30, 20)], point_labels=[1]),
                   Prompt(polygon=[(5, 5), (50, 5), (30, 40)]),
                   Prompt(region=np.pad(np.ones((10, 10), bool), ((5, 57), (5, 85))))):
        res = sess.predict(prompt)
        assert res.mask.shape == (72, 100)
        assert "<region></region>" in res.provenance["model_question"]


def test_engine_without_seg_returns_empty_mask_and_reason(tiny):
    sess = _engine(tiny, "No mask here.").encode(test_image(40, 40))
    res = sess.predict(Prompt(text="Is there a tumor?"))
    assert res.empty and "without <SEG>" in res.reason
    with pytest.raises(PromptError):
        sess.predict(Prompt())


def test_engine_session_chat(tiny):
    sess = _engine(tiny).encode(test_image(40, 60))
    chat = sess.chat(ChatSettings(generation=GenerationSettings(max_new_tokens=3)))
    assert chat.ask("What is this?").text


def test_grounding_question_templates():
    assert grounding_question("liver", False) == "Could you segment out the liver in this image?"
    assert grounding_question("Where is the kidney?", False) == "Where is the kidney?"
    assert "<region>" in grounding_question(None, True)
    with pytest.raises(PromptError):
        grounding_question("", False)


def test_selection_precedence_and_missing_weights_message(tmp_path):
    from types import SimpleNamespace

    settings = {"medplib/checkpoint": "/from/settings", "medplib/device": "cpu"}
    env = {"MEDPLIB_CHECKPOINT": "/from/env"}
    args = SimpleNamespace(checkpoint="/from/cli", clip=None, sam=None, device=None)
    assert MedplibSettings.from_sources(settings, args, env).checkpoint == "/from/cli"
    assert MedplibSettings.from_sources(settings, None, env).checkpoint == "/from/env"
    s = MedplibSettings.from_sources(settings, None, {})
    assert (s.checkpoint, s.device) == ("/from/settings", "cpu")
    ok, msg = MedplibSettings().availability()
    assert not ok and "MEDPLIB_CHECKPOINT" in msg and "LiteMedSAM" in msg
    with pytest.raises(LoadError, match="MEDPLIB_CHECKPOINT"):
        create_medplib_engine(env={})
    with pytest.raises(LoadError, match="does not exist"):
        create_medplib_engine(checkpoint=str(tmp_path / "missing"), env={})


def test_registry_selects_medplib(tiny_paths, monkeypatch):
    from medplib_core.engines.registry import create_engine

    for k in ("MEDPLIB_CHECKPOINT", "MEDPLIB_CLIP", "MEDPLIB_SAM"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(LoadError):
        create_engine({"name": "medplib"})
    eng = create_engine({"name": "medplib", "checkpoint": str(tiny_paths.checkpoint),
                         "clip": str(tiny_paths.clip), "sam": str(tiny_paths.sam), "device": "cpu"})
    assert eng.info.name == "MedPLIB" and eng.info.device.startswith("cpu")


def test_notice_text():
    from medplib_core.medplib import MEDPLIB_NOTICE

    assert "research" in MEDPLIB_NOTICE and "clinical" in MEDPLIB_NOTICE


def test_check_layout_full_size_on_meta(capsys):
    from medplib_core.cli.main import main

    assert main(["medplib", "check-layout"]) == 0
    out = capsys.readouterr().out
    assert "11,687,144,240" in out and "1206" in out and "layout OK" in out
