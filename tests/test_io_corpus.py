"""Every file of pydicom's test data and of pydicom-data loads or raises LoadError, quickly."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from medplib_core.errors import LoadError
from medplib_core.io import load


def _corpus() -> list[str]:
    try:
        from pydicom.data import get_testdata_files
    except ImportError:  # pragma: no cover
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = sorted(set(get_testdata_files()))
    return [p for p in paths if os.path.isfile(p)]


CORPUS = _corpus()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on broken files


def _id(path: str) -> str:
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}"


def test_corpus_includes_pydicom_data() -> None:
    assert len(CORPUS) > 150
    if not any("data_store" in p for p in CORPUS):
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CORPUS, ids=[_id(p) for p in CORPUS])
def test_file_loads_or_raises_load_error(path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            vol = load(path)
        except LoadError as exc:
            assert exc.path == path and path in str(exc)
            assert exc.reason
            return
    # a successful load is a complete, consistent volume
    assert vol.array.ndim in (3, 4)
    nk = vol.shape[0]
    assert nk >= 1 and all(n >= 1 for n in vol.shape)
    assert all(np.isfinite(vol.spacing)) and min(vol.spacing) > 0
    d = np.asarray(vol.direction)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-3)
    assert vol.source is not None and vol.source.kind == "dicom"
    assert len(vol.source.sop_instance_uids) == nk and len(vol.source.files) == nk
    if vol.is_colour:
        assert vol.array.shape[-1] == 3


@pytest.mark.timeout(60)
def test_pydicom_folders_load_or_raise() -> None:
    """Folders of the corpus (DICOMDIR trees, mixed series) behave the same way."""
    roots = sorted({os.path.dirname(p) for p in CORPUS})
    assert roots
    for root in roots:
        try:
            vol = load(root)
        except LoadError as exc:
            assert root in str(exc)
        else:
            assert vol.array.ndim in (3, 4)
