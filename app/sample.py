"""The sample scan behind ``--sample``: a real multi-slice volume installed from the package
registries, so MPR, the 2×2 layout and 3D propagation can be tried in the first minute.

In order: the Colin 27 T1 brain MRI of Debian's ``mricron-data`` (181 × 217 × 181, 1 mm; the
setup script installs it), the multi-frame MR of ``pydicom-data`` (10 frames), pydicom's own
5-slice CT series, and only then a single CT slice. Nothing from ../shared is ever used.
"""

from __future__ import annotations

import os
from pathlib import Path

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
VOLUMES = ("ch2.nii.gz",)  # in MRICRON_TEMPLATES
PYDICOM_FILES = ("emri_small.dcm",)  # pydicom-data's multi-frame MR
PYDICOM_SERIES = ("dicomdirtests/98892001/CT5N",)  # folders of pydicom's own test files
SINGLE_SLICES = ("693_UNCR.dcm", "CT_small.dcm")


def _testdata(name: str) -> str | None:
    try:
        from pydicom.data import get_testdata_file

        return get_testdata_file(name, download=False)
    except Exception:  # pydicom may try a download for unknown names; never fail here
        return None


def sample_candidates() -> list[str]:
    """Every sample available offline, the most useful first."""
    found = [str(MRICRON_TEMPLATES / n) for n in VOLUMES if (MRICRON_TEMPLATES / n).is_file()]
    found += [p for p in map(_testdata, PYDICOM_FILES) if p]
    base = _testdata("CT_small.dcm")
    if base:
        found += [str(Path(base).parent / d) for d in PYDICOM_SERIES if (Path(base).parent / d).is_dir()]
    found += [p for p in map(_testdata, SINGLE_SLICES) if p]
    return [p for p in found if os.path.exists(p)]


def sample_path() -> str:
    """Path of the best sample scan available offline; raises LookupError when none is."""
    found = sample_candidates()
    if not found:
        raise LookupError("no sample scan found (install Debian's mricron-data or pydicom-data)")
    return found[0]
