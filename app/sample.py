"""The sample scan behind ``--sample``: a real CT from pydicom's (or pydicom-data's) test files."""

from __future__ import annotations

# Preferred first: a full 512×512 abdominal CT slice from pydicom-data, then pydicom's own CT.
CANDIDATES = ("693_UNCR.dcm", "CT_small.dcm")


def sample_path() -> str:
    """Path of the best sample CT available offline; raises LookupError when none is."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError as exc:  # pragma: no cover - pydicom is a dependency
        raise LookupError("pydicom is not installed") from exc
    for name in CANDIDATES:
        try:
            path = get_testdata_file(name, download=False)
        except Exception:  # pydicom may try a download for unknown names; never fail here
            path = None
        if path:
            return str(path)
    raise LookupError("no sample CT found in pydicom's test files")
