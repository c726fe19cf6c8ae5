"""Per-slice rules of 3D propagation: a prompt box that follows the object, and when to stop.

A slice is first prompted with its neighbour's tight box, corrected by how far this engine's
masks reach past a box (measured once on the seed slice). The box is then steered by evidence
and the slice decoded again (a few times at most, decoding is cheap next to encoding): a side
moves out where the pixels just beyond the mask look like the object (it grows past the box),
a side moves in where the mask reaches well past the part of it that looks like the object (the
model filled the box with a neighbour). "Looks like the object" is the seed's own grey levels
against its surroundings (`propagation_appearance`). A re-prompt is kept only when it is the
same object, the model's score does not drop, it does not balloon, and on balance it adds
object-like pixels or drops other ones. Every box is decoded at each scale the engine offers
(its crop-and-zoom region and the whole slice); the view kept is the one that continues the
neighbour's mask and holds the most object-like pixels. The result's rim that does not look
like the object is trimmed (enclosed holes stay).

The direction stops where the object ends: empty or tiny result, an area jump, little overlap
with the neighbour, a low model score, a result that looks more like the seed's surroundings
than like the seed, or one that grows again after the object had been tapering off (a slow
leak into a neighbour that looks alike passes every single-step rule; see `regrows`).
A side of the box is pushed out only where the result reaches it (the box may have cut the
object there); where the model stopped short of the box it found the object's edge itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .base import EngineSession, Prompt
from .propagation_appearance import Appearance
from .prompts import Box, iou, mask_box
from ..errors import PromptError


@dataclass
class StopRules:
    """How a direction follows the object and decides that it has ended (round numbers)."""

    min_pixels: int = 4  # smaller results mean the object has ended
    # --- the prompt box follows the object
    follow: bool = True  # steer the box by the object's appearance (else: the neighbour's box only)
    steps: int = 3  # re-prompts per slice at most
    push: float = 0.2  # a side pushed out moves by this fraction of the box size (at least 2 px)
    tolerance: float = 0.05  # sides closer than this fraction of the box size (at least 2 px) agree
    min_kept: float = 0.8  # a re-prompt must share this much with the previous candidate (same object)
    max_score_drop: float = 0.05  # ... and the model's score may drop at most this much
    max_growth: float = 1.5  # ... and steering may grow the first result by at most this factor
    trim: bool = True  # drop the result's rim that does not look like the object (holes kept)
    views: bool = True  # decode each box at every scale the engine offers, keep the one like the neighbour
    push_at_box: bool = True  # push a side out only where the result reaches the box (it was cut there)
    regrowth: bool = True  # stop where a tapering object grows again past max_growth x its smallest slice
    # --- the object has ended
    min_area_ratio: float = 0.2  # new area / previous area below this: stop
    max_area_ratio: float = 2.5  # ... above this: leaked into a neighbour, stop
    min_overlap: float = 0.2  # IoU with the previous slice's mask below this: stop
    min_score: float = 0.35  # the model's own quality estimate below this: stop
    # and: the result looks more like the seed's surroundings than like the seed (`Appearance`)


@dataclass
class Candidate:
    """One decoded prompt on a slice."""

    box: Box
    mask: np.ndarray
    score: float


@dataclass
class SliceOutcome:
    """What one slice gave: the mask (None when the direction stops there) and how."""

    mask: np.ndarray | None
    score: float
    reason: str | None  # why the direction stops here (None: it goes on)
    stats: dict = field(default_factory=dict)


def keep_touching(mask: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Components of ``mask`` that overlap ``prev`` grown by a few pixels."""
    if not mask.any():
        return mask
    r = max(1, int(0.05 * np.sqrt(prev.sum())))
    near = cv2.dilate(prev.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(lab[near & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep) if keep.size else np.zeros_like(mask)


class SliceSegmenter:
    """Decodes box prompts on one encoded slice, keeping only what connects to the neighbour.

    With ``views`` every scale the engine looks at a box (`EngineSession.predict_views`: e.g.
    its zoom region and the whole slice) is decoded and the view that continues the object best
    is kept: the one that overlaps the neighbour's mask most and (given the slice's object-like
    pixels ``likely``) holds the most of what looks like the object, net of what does not.
    """

    def __init__(self, session: EngineSession, prev: np.ndarray, views: bool = False,
                 likely: np.ndarray | None = None):
        self.session, self.prev, self.decodes = session, prev, 0
        self.views, self.likely = views, likely

    def __call__(self, box: Box) -> Candidate | str:
        self.decodes += 1
        try:
            prompt = Prompt(box=box)
            results = self.session.predict_views(prompt) if self.views else [self.session.predict(prompt)]
        except PromptError as exc:
            return str(exc)
        cands = [Candidate(box, keep_touching(np.asarray(r.mask, bool), self.prev), float(r.score))
                 for r in results if not r.reason]
        if not cands:
            return results[0].reason or "the model found no object for this prompt"
        return max(cands, key=self._continues) if len(cands) > 1 else cands[0]

    def _continues(self, cand: Candidate) -> float:
        """How well a view continues the neighbour: its overlap with the neighbour's mask, plus
        (given ``likely``) its object-like pixels less its other pixels, per neighbour pixel;
        both on the mask as the rim trim will leave it."""
        if self.likely is None:
            return iou(cand.mask, self.prev)
        mask = Appearance.trim(cand.mask, self.likely)
        net = int(self.likely[mask].sum()) * 2 - int(mask.sum())
        return iou(mask, self.prev) + net / max(1, int(self.prev.sum()))


def _side_px(box: Box, frac: float) -> tuple[float, float]:
    """``frac`` of the box's width and height, at least 2 px."""
    return max(2.0, frac * (box[2] - box[0] + 1)), max(2.0, frac * (box[3] - box[1] + 1))


def _beyond(likely: np.ndarray, mask: np.ndarray, side: int, depth: int) -> float:
    """Share of object-like pixels in the strip just beyond the mask's extreme on ``side``
    (0 left, 1 top, 2 right, 3 bottom), along the part of the mask that reaches it."""
    m = mask if side in (0, 2) else mask.T
    lk = likely if side in (0, 2) else likely.T
    if side in (2, 3):
        m, lk = m[:, ::-1], lk[:, ::-1]
    cols = np.nonzero(m.any(axis=0))[0]
    if cols.size == 0:
        return 0.0
    c0 = int(cols[0])
    rows = m[:, c0:c0 + 2].any(axis=1)  # the rows where the mask reaches (within 1 px) its extreme
    strip = lk[rows][:, max(0, c0 - depth):c0]
    return float(strip.mean()) if strip.size else 0.0


def steer(cand: Candidate, likely: np.ndarray, rules: StopRules, pushed: set[int]) -> Box | None:
    """A better box for this slice from where the object-like pixels lie, or None.

    A side moves in to the extent of the candidate's object-like core when the candidate
    reaches clearly past it (the model filled its box with something that does not look like
    the object); a side moves out past the candidate when the pixels just beyond the
    candidate's edge there look like the object (it goes on beyond the box). A side already
    pushed out (``pushed``, updated here) moves out again only where the candidate reaches the
    pushed box: where the model stopped short of it, it found the object's edge itself.
    """
    core = cv2.morphologyEx((cand.mask & likely).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    core = keep_touching(core, cand.mask) if core.any() else core
    ext = mask_box(core)
    if ext is None or core.sum() < rules.min_pixels:
        return None
    h, w = cand.mask.shape
    box = list(cand.box)
    reach = mask_box(cand.mask)
    tx, ty = _side_px(cand.box, rules.tolerance)
    px, py = _side_px(cand.box, rules.push)
    for side in range(4):
        tol, push = (tx, px) if side in (0, 2) else (ty, py)
        inward = ext[side] - reach[side] if side < 2 else reach[side] - ext[side]
        if inward > tol:  # the candidate reaches well past its object-like core here
            box[side] = ext[side]
            continue
        gap = reach[side] - box[side] if side < 2 else box[side] - reach[side]
        if (side in pushed or rules.push_at_box) and gap > tol:
            continue
        if _beyond(likely, cand.mask, side, int(round(tol))) >= 0.5:
            box[side] = min(box[side], reach[side]) - push if side < 2 else max(box[side], reach[side]) + push
            pushed.add(side)
    box = [max(0.0, box[0]), max(0.0, box[1]), min(w - 1.0, box[2]), min(h - 1.0, box[3])]
    new = tuple(float(v) for v in box)
    if new == tuple(cand.box) or new[2] - new[0] < 1 or new[3] - new[1] < 1:
        return None
    return new  # type: ignore[return-value]


def box_reach(session: EngineSession, seed: np.ndarray, views: bool = False) -> np.ndarray:
    """How far the engine's mask reaches past a tight box on this object, per side (left, top,
    right, bottom; outward positive, pixels, at most a tenth of the box): the seed slice decoded
    with the seed's own box."""
    sb = mask_box(seed)
    res = SliceSegmenter(session, seed, views)(sb)
    if isinstance(res, str) or not res.mask.any():
        return np.zeros(4)
    mb = mask_box(res.mask)
    reach = np.array([sb[0] - mb[0], sb[1] - mb[1], mb[2] - sb[2], mb[3] - sb[3]], float)
    lim = 0.1 * np.array([sb[2] - sb[0] + 1, sb[3] - sb[1] + 1] * 2)
    return np.clip(reach, -lim, lim)


def _better(new: Candidate, old: Candidate, likely: np.ndarray, first_area: int, rules: StopRules) -> bool:
    """A re-prompt is taken when it is the same object (not a jump to a neighbour), the model
    does not like it clearly less, and the change agrees with the appearance: it adds more
    object-like than other pixels, or drops more other than object-like ones (net)."""
    if new.score < old.score - rules.max_score_drop or not new.mask.any():
        return False
    a, b = int(new.mask.sum()), int(old.mask.sum())
    if int((new.mask & old.mask).sum()) < rules.min_kept * min(a, b):
        return False
    if a > rules.max_growth * first_area:  # a leak into a neighbour that looks alike
        return False
    vote = np.where(likely, 1, -1)
    return int(vote[new.mask & ~old.mask].sum()) - int(vote[old.mask & ~new.mask].sum()) > 0


def regrows(areas: Sequence[int], factor: float) -> bool:
    """Whether the last of a direction's ``areas`` (the seed's first) grows past ``factor`` x
    the smallest area since the direction's largest slice, after the object had shrunk from
    that slice. An object's cross-section swells and tapers smoothly; once it tapers toward
    its end, a steady regrowth is the result creeping into a neighbour that looks alike, slice
    by slice within the single-step rules (an organ that is still widening sets a new largest
    slice at every step and never trips this). Once the object has tapered deeply (its area
    fell by sqrt(factor), half the regrowth on a log scale), a regrowth past the old largest
    slice does not start a new "largest": a leak can outgrow a well-segmented seed."""
    if len(areas) < 3:
        return False
    deep = math.sqrt(factor)
    peak = trough = areas[0]
    tapered = False
    for a in areas[1:-1]:
        if a >= peak and not tapered:
            peak = trough = a
        else:
            trough = min(trough, a)
            tapered = tapered or trough * deep < peak
    return trough < peak and areas[-1] > factor * trough


class Follower:
    """Segments slice after slice from the seed, with the seed's appearance as evidence.

    ``seed_session`` (the encoded seed slice) calibrates the prompt: decoding the seed's own
    tight box shows how far this engine's mask reaches past a box on this object (some paths
    fill a box and a little more, others stay inside it); the neighbour's box is corrected by
    that reach, so boxes neither creep outwards nor shrink slice after slice.
    """

    def __init__(self, seed_image: np.ndarray, seed: np.ndarray, rules: StopRules,
                 seed_session: EngineSession | None = None):
        self.rules = rules
        self.appearance = Appearance(np.asarray(seed_image), seed)
        self.reach = np.zeros(4) if seed_session is None else box_reach(seed_session, seed, rules.views)

    def prompt_box(self, prev: np.ndarray) -> Box:
        """The neighbour's tight box less this engine's reach past a box."""
        x0, y0, x1, y1 = mask_box(prev)
        r = self.reach
        box = (x0 + r[0], y0 + r[1], x1 - r[2], y1 - r[3])
        h, w = prev.shape
        box = (max(0.0, box[0]), max(0.0, box[1]), min(w - 1.0, box[2]), min(h - 1.0, box[3]))
        return box if box[2] - box[0] >= 1 and box[3] - box[1] >= 1 else (x0, y0, x1, y1)

    def segment(self, session: EngineSession, likely: np.ndarray | None, prev: np.ndarray) -> tuple[Candidate | str, int]:
        """The best candidate on a slice from its neighbour's mask (or why there is none);
        ``likely``: the slice's object-like pixels (None: no appearance evidence)."""
        rules = self.rules
        decode = SliceSegmenter(session, prev, rules.views, likely if rules.trim else None)
        cand = decode(self.prompt_box(prev))
        if isinstance(cand, str) or not rules.follow or likely is None:
            return cand, decode.decodes
        tried, first_area, pushed = {tuple(cand.box)}, int(cand.mask.sum()), set()
        for _ in range(rules.steps):
            box = steer(cand, likely, rules, pushed)
            if box is None or box in tried:
                break
            tried.add(box)
            new = decode(box)
            if isinstance(new, str) or not _better(new, cand, likely, first_area, rules):
                break
            cand = new
        return cand, decode.decodes

    def end_reason(self, cand: Candidate, prev: np.ndarray, image: np.ndarray) -> str | None:
        """Why the object has ended on this slice, or None when the candidate continues it."""
        rules = self.rules
        area, prev_area = int(cand.mask.sum()), int(prev.sum())
        if area < rules.min_pixels:
            return "the object ended (empty result)"
        ratio = area / max(prev_area, 1)
        if ratio < rules.min_area_ratio or ratio > rules.max_area_ratio:
            return f"area jumped by a factor {ratio:.2f}"
        if iou(cand.mask, prev) < rules.min_overlap:
            return "little overlap with the neighbouring slice"
        if cand.score < rules.min_score:
            return f"low model score {cand.score:.2f}"
        app = self.appearance
        if app.informative:
            share = float(app.likely(image)[cand.mask].mean())
            if share < (app.hit_inside + app.hit_outside) / 2:
                return f"it no longer looks like the seed ({share:.0%} of it does)"
        return None

    def next_slice(self, session: EngineSession, image: np.ndarray, prev: np.ndarray,
                   areas: Sequence[int] = ()) -> SliceOutcome:
        """Segment one slice from its neighbour's mask and decide whether the object goes on;
        ``areas``: the areas this direction kept so far, the seed's first (for `regrows`)."""
        likely = self.appearance.likely_region(image) if self.appearance.informative else None
        cand, decodes = self.segment(session, likely, prev)
        if isinstance(cand, str):
            return SliceOutcome(None, 0.0, cand, {"decodes": decodes})
        reason = self.end_reason(cand, prev, image)
        if reason is None and self.rules.trim and likely is not None:
            cand = Candidate(cand.box, self.appearance.trim(cand.mask, likely), cand.score)
            if cand.mask.sum() < self.rules.min_pixels:
                reason = "the object ended (nothing of it looks like the seed)"
        if reason is None and self.rules.regrowth and regrows(list(areas) + [int(cand.mask.sum())],
                                                              self.rules.max_growth):
            reason = "it grows again after the object had been tapering off (a leak into a neighbour)"
        stats = {"area": int(cand.mask.sum()), "score": round(cand.score, 3), "decodes": decodes,
                 "box": [round(float(v), 1) for v in cand.box]}
        return SliceOutcome(None if reason else cand.mask, cand.score, reason, stats)
