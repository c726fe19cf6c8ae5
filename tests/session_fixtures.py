"""Fixtures of the headless session tests: the small real CT and a fresh session on it
(import them into a test module: ``from session_fixtures import ct, session``)."""

from __future__ import annotations

import pytest

import medplib_core
from medplib_core.session import AnnotationSession
from studio_support import stacked_ct


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """The small real CT (a NIfTI written by `stacked_ct`): (path, loaded volume), per module."""
    path = stacked_ct(tmp_path_factory.mktemp("ct") / "ct.nii.gz")
    return path, medplib_core.load(path)


@pytest.fixture
def session(ct):
    """A fresh headless annotation session on that CT."""
    path, vol = ct
    return AnnotationSession(vol, str(path))
