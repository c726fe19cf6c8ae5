"""Shared fixtures: where the real test data lives, and skips with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# GUI tests draw offscreen unless a caller chose a platform (the Xvfb tests set their own).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_data_dir() -> Path | None:
    env = os.environ.get("MEDPLIB_SHARED_DATA")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MEDPLIB_SHARED_DATA); skips the test when it is missing."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present (set MEDPLIB_SHARED_DATA to its location)")
    return d


@pytest.fixture(scope="session")
def pydicom_ct_path() -> str:
    """pydicom's real CT slice (CT_small.dcm, 128x128, HU)."""
    from pydicom.data import get_testdata_file

    return get_testdata_file("CT_small.dcm")
