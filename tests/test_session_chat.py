"""The session's chat, headless, with the tiny demo MedPLIB checkpoint (every greedy answer is
"The liver <SEG>." with a mask): regions, grounded proposals, replay after reopening, one model."""

from __future__ import annotations

import numpy as np
import pytest

import medplib_core
from medplib_core.annotation import PromptKind, PromptStatus
from medplib_core.engines.registry import create_engine
from medplib_core.project import load_project
from medplib_core.slicing import slice_geometry
from medplib_core.session import (AnnotationSession, AnswerState, ChatBusyError, ConversationCache,
                                  RegionKind, RegionRef, RegionSource)
from studio_support import stacked_ct
from test_medplib_support import _root, tiny_set

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    paths = tiny_set(_root(tmp_path_factory), "demo")
    return paths, create_engine({"name": "medplib", "checkpoint": str(paths.checkpoint),
                                 "clip": str(paths.clip), "sam": str(paths.sam), "device": "cpu"})


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    path = stacked_ct(tmp_path_factory.mktemp("ct") / "ct.nii.gz")
    return path, medplib_core.load(path)


def test_one_medplib_model_for_chat_and_segmentation(demo):
    paths, engine = demo
    again = create_engine({"name": "medplib", "checkpoint": str(paths.checkpoint), "clip": str(paths.clip),
                           "sam": str(paths.sam), "device": "cpu"})
    assert again is engine  # the same loaded model, not a second copy


def test_chat_turns_grounding_regions_and_replay(demo, ct, tmp_path):
    _, engine = demo
    s = AnnotationSession(ct[1], str(ct[0]))
    key = ("axial", 6)
    cache = ConversationCache()
    tokens = []
    box = RegionRef(RegionKind.BOX, [45, 40, 74, 64])
    answer = s.chat.ask_now(engine, cache, key, "What is in <region>?", [box], on_token=tokens.append)
    assert answer.state is AnswerState.DONE and "liver" in answer.text and len(tokens) >= 3
    assert answer.info["replayed_turns"] == 0
    rec = s.proposal.record
    assert rec.kind is PromptKind.GROUNDING and answer.prompt_ids == [rec.id] and rec.mask.any()
    assert rec.prompt["box"] == [45.0, 40.0, 74.0, 64.0] and rec.provenance["question"] == "What is in <region>?"
    s.accept()
    entry = s.labels[rec.label_value].provenance[-1]
    assert entry["kind"] == "grounding" and entry["engine"] == "MedPLIB" and "liver" in entry["answer"]

    # the (corrected) label becomes the region of the next question: a chat-region record
    shown = slice_geometry(s.volume, *key).take(s.labelmap.array) == rec.label_value
    ref = RegionRef(RegionKind.MASK, source=RegionSource.LABEL, note="label 'label 1'", mask=shown)
    second = s.chat.ask_now(engine, cache, key, "And <region>?", [ref])
    assert second.state is AnswerState.DONE and second.info["replayed_turns"] == 0  # cached session reused
    [region_rec] = [r for r in s.prompts if r.kind is PromptKind.CHAT_REGION]
    assert region_rec.status is PromptStatus.REFERENCE and np.array_equal(region_rec.mask, shown)
    conv = s.chat.conversation(key)
    assert len(conv.turns()) == 2

    pending = s.chat.ask(key, "one")
    with pytest.raises(ChatBusyError):
        s.chat.ask(key, "two")
    s.chat.finish(pending, AnswerState.STOPPED, text="")
    assert [m.state for m in conv.messages if m.role == "assistant"] == ["done", "done", "stopped"]

    folder = s.save(tmp_path / "chat.medplib")
    back = AnnotationSession()
    back.load_project(ct[1], load_project(folder))
    conv2 = back.chat.conversation(key)
    assert [m.text for m in conv2.messages] == [m.text for m in conv.messages]
    assert conv2.messages[2].regions[0].prompt_id == region_rec.id
    third = back.chat.ask_now(engine, ConversationCache(), key, "What else?")
    assert third.state is AnswerState.DONE and third.info["replayed_turns"] == 2  # rebuilt from the saved turns
