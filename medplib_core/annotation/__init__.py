"""The annotation model: labels, label maps, policy-aware edits and undo."""

from .labels import Label, LabelSet, OverlapPolicy, PALETTE  # noqa: F401
from .labelmap import Edit, LabelMap, LockedLabelError  # noqa: F401
