"""The annotation model: labels, label maps, policy-aware edits, prompt kinds and statuses."""

from .labels import Label, LabelSet, OverlapPolicy, PALETTE, PROPOSAL_COLOR  # noqa: F401
from .labelmap import Edit, LabelMap, LockedLabelError  # noqa: F401
from .kinds import PromptKind, PromptStatus  # noqa: F401
