"""Label definitions: value, name, colour, visibility, lock and overlap policy."""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from enum import Enum
from typing import Any, Callable, Iterator

# What a pending proposal is drawn with (white hatching and a black/white dashed outline, see
# the viewer): no label is drawn like that, and no default label colour is near it.
PROPOSAL_COLOR: tuple[int, int, int] = (255, 255, 255)
PROPOSAL_MIN_DISTANCE = 90.0  # RGB distance every palette colour keeps from PROPOSAL_COLOR

def away_from_proposal(color) -> tuple[int, int, int]:
    """``color``, moved straight away from `PROPOSAL_COLOR` until it keeps the palette's
    distance (a colour the user picks must not look like a pending proposal)."""
    c = [float(v) for v in color][:3]
    d = [a - b for a, b in zip(c, PROPOSAL_COLOR)]
    dist = sum(x * x for x in d) ** 0.5
    if dist >= PROPOSAL_MIN_DISTANCE:
        return tuple(int(v) for v in c)  # type: ignore[return-value]
    if dist < 1e-6:
        d, dist = [-1.0, -1.0, -1.0], 3 ** 0.5
    k = PROPOSAL_MIN_DISTANCE / dist
    return tuple(int(round(min(255.0, max(0.0, p + x * k)))) for p, x in zip(PROPOSAL_COLOR, d))  # type: ignore[return-value]


# A palette that stays distinguishable on grey scans (value 1 gets the first colour).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 150, 190),
    (0, 128, 128), (160, 120, 255), (170, 110, 40), (110, 120, 255), (128, 0, 0),
    (120, 235, 160), (128, 128, 0), (255, 180, 120), (0, 0, 128), (128, 128, 128),
)


class OverlapPolicy(str, Enum):
    """What an edit may do to voxels that already belong to another label."""

    OVERWRITE = "overwrite"  # take them (locked labels are still protected)
    MERGE = "merge"  # only fill background voxels; never take another label's voxels
    # A *locked* label is never touched, whatever the policy of the edit.


@dataclass
class Label:
    value: int
    name: str
    color: tuple[int, int, int]
    visible: bool = True
    locked: bool = False
    policy: OverlapPolicy = OverlapPolicy.OVERWRITE
    description: str = ""
    provenance: list[dict[str, Any]] = field(default_factory=list)
    # coded meaning: {"category": code, "type": code[, "modifier": code]}, each code a
    # {"value", "scheme", "meaning"} dict (see annotation.terminology); None = not coded
    terminology: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["color"] = list(self.color)
        d["policy"] = self.policy.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Label":
        return cls(
            value=int(d["value"]),
            name=str(d.get("name", f"label {d['value']}")),
            color=tuple(int(c) for c in d.get("color", PALETTE[(int(d["value"]) - 1) % len(PALETTE)])),
            visible=bool(d.get("visible", True)),
            locked=bool(d.get("locked", False)),
            policy=OverlapPolicy(d.get("policy", "overwrite")),
            description=str(d.get("description", "")),
            provenance=list(d.get("provenance", [])),
            terminology=_terminology(d.get("terminology")),
        )


def _terminology(value: Any) -> dict[str, Any] | None:
    """A label's codes as stored, or None when absent or not of the expected shape."""
    if not isinstance(value, dict):
        return None
    code_keys = {"value", "scheme", "meaning"}
    parts = {k: value[k] for k in ("category", "type", "modifier") if isinstance(value.get(k), dict)}
    if not {"category", "type"} <= set(parts) or any(not code_keys <= set(c) for c in parts.values()):
        return None
    return {k: {c: str(v[c]) for c in code_keys} for k, v in parts.items()}


class LabelSet:
    """An ordered set of labels keyed by value (1..65535; 0 is background)."""

    def __init__(self, labels: list[Label] | None = None):
        self._labels: dict[int, Label] = {}
        self._listeners: list[Callable[[str, int], None]] = []
        for lab in labels or []:
            self._labels[lab.value] = lab

    # ----- events ------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[str, int], None]) -> None:
        """Call ``fn(event, value)`` on "added", "changed" and "removed"."""
        self._listeners.append(fn)

    def _emit(self, event: str, value: int) -> None:
        for fn in list(self._listeners):
            fn(event, value)

    # ----- access ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Label]:
        return iter(sorted(self._labels.values(), key=lambda lab: lab.value))

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, value: int) -> bool:
        return int(value) in self._labels

    def __getitem__(self, value: int) -> Label:
        return self._labels[int(value)]

    def get(self, value: int) -> Label | None:
        return self._labels.get(int(value))

    def by_name(self, name: str) -> Label | None:
        for lab in self:
            if lab.name.lower() == name.lower():
                return lab
        return None

    def locked_values(self) -> list[int]:
        return [lab.value for lab in self if lab.locked]

    def next_value(self) -> int:
        return max(self._labels, default=0) + 1

    # ----- changes -----------------------------------------------------------------------------
    def add(self, name: str | None = None, value: int | None = None,
            color: tuple[int, int, int] | None = None, **kw: Any) -> Label:
        value = int(value) if value is not None else self.next_value()
        if not 0 < value < 65536:
            raise ValueError(f"label values run from 1 to 65535, got {value}")
        if value in self._labels:
            raise ValueError(f"label value {value} already exists ({self._labels[value].name})")
        lab = Label(value=value, name=name or f"label {value}",
                    color=color or PALETTE[(value - 1) % len(PALETTE)], **kw)
        self._labels[value] = lab
        self._emit("added", value)
        return lab

    def update(self, value: int, **changes: Any) -> Label:
        lab = self._labels[int(value)]
        for key, val in changes.items():
            if not hasattr(lab, key):
                raise AttributeError(f"a label has no field {key!r}")
            if key == "policy":
                val = OverlapPolicy(val)
            setattr(lab, key, val)
        self._emit("changed", lab.value)
        return lab

    def remove(self, value: int) -> Label:
        lab = self._labels.pop(int(value))
        self._emit("removed", lab.value)
        return lab

    def to_list(self) -> list[dict[str, Any]]:
        return [lab.to_dict() for lab in self]

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> "LabelSet":
        return cls([Label.from_dict(d) for d in items])
