"""Request bodies into engine objects and engine results into response bodies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medplib_core.engines.base import Prompt, SegResult

from . import wire
from .schemas import MaskBody, PromptBody, RegionBody


def mask(body: MaskBody | None, field: str, max_bytes: int) -> np.ndarray | None:
    if body is None:
        return None
    return wire.mask_from_payload(body.model_dump(), field, max_bytes)


def prompt(body: PromptBody, max_bytes: int) -> Prompt:
    return Prompt(
        points=[(float(x), float(y)) for x, y in body.points],
        point_labels=[int(v) for v in body.point_labels],
        box=tuple(body.box) if body.box is not None else None,
        polygon=[(float(x), float(y)) for x, y in body.polygon] if body.polygon is not None else None,
        region=mask(body.region, "prompt.region", max_bytes),
        mask_input=mask(body.mask_input, "prompt.mask_input", max_bytes),
        text=body.text,
    )


def region(body: RegionBody, field: str, max_bytes: int) -> Any:
    """A region as `medplib.region.as_region` takes it (a list, or a bool mask)."""
    data = {"point": body.point, "points": body.points, "box": body.box, "polygon": body.polygon,
            "mask": body.mask}[body.kind]
    if data is None:
        raise wire.WireError(f"{field}.{body.kind}", f"a {body.kind} region needs its {body.kind!r} field")
    if body.kind == "mask":
        return mask(body.mask, f"{field}.mask", max_bytes)
    nested = body.kind in ("polygon", "points")
    return {"kind": body.kind, "data": [list(p) for p in data] if nested else list(data)}


def jsonable(obj: Any) -> Any:
    """Provenance records as strict JSON (numpy scalars to numbers, NaN to None, others to str)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def _score(v: float) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0


def prediction(res: SegResult) -> dict[str, Any]:
    return {"mask": wire.mask_payload(res.mask), "score": _score(res.score),
            "provenance": jsonable(res.provenance), "reason": res.reason}


def turn(t) -> dict[str, Any]:
    """A `medplib.chat.ChatTurn` as the ``turn`` event's data."""
    return {"question": t.question, "text": t.text, "masks": [wire.mask_payload(m) for m in t.masks],
            "scores": [_score(s) for s in t.scores], "provenance": jsonable(t.provenance),
            "stop_reason": t.stop_reason}


def propagation(res) -> dict[str, Any]:
    return {"mask": wire.mask_payload(res.mask), "summary": jsonable(res.summary),
            "axis": int(res.axis), "seed_index": int(res.seed_index)}
