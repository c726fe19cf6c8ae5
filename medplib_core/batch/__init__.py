"""Bulk annotation: resumable batch runs over many cases, and the review of their results."""

from .manifest import Manifest  # noqa: F401
from .runner import BatchProgress, run_batch  # noqa: F401
from .spec import BatchSpec, SpecError, load_spec  # noqa: F401
