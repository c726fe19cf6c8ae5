"""One click -> mask for a box-trained model.

LiteMedSAM was trained with boxes, so a click alone is ambiguous. We estimate the object's
extent locally and let the model judge:

1. candidate boxes: a flood fill of the (smoothed) displayed slice from the click, plus squares
   of three sizes centred on the click;
2. the candidates are decoded in one batch against the cached whole-slice embedding, mask
   logits only inside the candidates' union (the click itself is not fed to the model:
   LiteMedSAM's point prompts measured worse); masks that miss the click are dropped, the rest
   ranked by predicted IoU, agreement between them and how central the click is in the mask.

Every candidate costs a decoder pass over all 64x64 image tokens (about 15-19 ms in bf16 on two
cores), so the set is kept to four. On dev2d (bench/segmentation.py, two cores) the earlier
eight (flood fills at tolerances 6/12/20/32, squares 0.05-0.35) gave single-click Dice 0.754 in
150 ms with the same decoder; these four give 0.753 in 89 ms median. Re-decoding the winner's
own box (0.737) or fewer candidates (three: at most 0.732) measured worse. Re-checked on all of
dev2d under AVX2 (fp32, 0.758 for these four): every fixed set of two or three candidates from
a flood fill and eight square sizes, early exit when two candidates agree (they rarely do),
the multimask outputs, the click as a point prompt next to the box, penalties for masks cut
by their box, other ranking weights and averaging the agreeing masks all gained nothing on
both halves (at most +0.004); the per-candidate cost fell instead (`fast_decoder`, v3).
The ranking, not the candidates, is what holds the Dice back: the best of these four would
give 0.821 (of eleven boxes, flood fills at four tolerances and seven squares: 0.861), the
ranking picks 0.753-0.758 (`bench/single_click.py` prints both). Adding SAM's stability
score, the gradient along the mask's border, the contrast between the mask and a ring around
it, or how much of the box edge the mask covers moved the two halves in opposite directions
or by less than 0.01 (bf16 on a Zen 4, 2026-12-03).
"""

from __future__ import annotations

import cv2
import numpy as np

from .prompts import Box, expand_box, iou, mask_box

TOLERANCES = (32,)  # grey levels of the displayed (windowed) slice
SQUARES = (0.1, 0.2, 0.35)  # side as a fraction of the slice's longest side
MAX_AREA = 0.6  # flood fills larger than this fraction of the slice are leaks


def extent_candidates(image: np.ndarray, x: float, y: float) -> list[Box]:
    """Candidate boxes around a click from region growing and fixed scales."""
    h, w = image.shape[:2]
    xi, yi = int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1)))
    sigma = max(0.8, max(h, w) / 512.0)
    smooth = cv2.GaussianBlur(image, (0, 0), sigma)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    boxes: list[Box] = []
    for tol in TOLERANCES:
        ff = np.zeros((h + 2, w + 2), np.uint8)
        diff = (tol,) * 3
        flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
        cv2.floodFill(smooth, ff, (xi, yi), 0, diff, diff, flags)
        region = cv2.morphologyEx(ff[1:-1, 1:-1], cv2.MORPH_OPEN, kernel) > 0
        n, lab = cv2.connectedComponents(region.astype(np.uint8), connectivity=4)
        if lab[yi, xi] == 0:
            continue
        region = lab == lab[yi, xi]
        if region.sum() < 9 or region.mean() > MAX_AREA:
            continue
        box = mask_box(region)
        if box is not None:
            boxes.append(expand_box(box, 0.05, (h, w), min_pad=1.0))
    side = max(h, w)
    for f in SQUARES:
        r = max(4.0, f * side / 2.0)
        boxes.append((max(0.0, x - r), max(0.0, y - r), min(w - 1.0, x + r), min(h - 1.0, y + r)))
    return _dedupe(boxes)


def _dedupe(boxes: list[Box], tol: float = 0.1) -> list[Box]:
    out: list[Box] = []
    for b in boxes:
        size = max(b[2] - b[0], b[3] - b[1], 1.0)
        if all(max(abs(p - q) for p, q in zip(b, o)) > tol * size for o in out):
            out.append(b)
    return out


def _consensus(masks: list[np.ndarray], ok: np.ndarray) -> np.ndarray:
    """Mean IoU of each candidate mask with the other valid ones (on a coarse grid)."""
    small = [m[::2, ::2] for m in masks]
    out = np.zeros(len(masks))
    for i, a in enumerate(small):
        vals = [iou(a, b) for j, b in enumerate(small) if j != i and ok[j]]
        out[i] = float(np.mean(vals)) if vals else 0.0
    return out


def _centrality(mask: np.ndarray, x: int, y: int) -> float:
    """How central the click is in the mask: its distance to the border over the largest one."""
    if not mask[y, x]:
        return 0.0
    d = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return float(d[y, x] / max(float(d.max()), 1e-6))


def decode_candidates(session, x: float, y: float):
    """The click's candidate boxes decoded in one batch against the cached whole-slice embedding:
    ``(logits, predicted IoU, masks at model resolution, the click at model resolution)``."""
    cands = extent_candidates(session.image, x, y)
    frame = session.frame
    within = (min(b[0] for b in cands), min(b[1] for b in cands), max(b[2] for b in cands),
              max(b[3] for b in cands))
    within = expand_box(within, 0.1, session.image_shape, min_pad=2.0)
    logits, pred = session.decode(frame, session.embedding, cands, raw=True, within=within)
    h256, w256 = frame.size
    masks = [lg[:h256, :w256] > 0 for lg in logits]  # judged at model resolution (fast)
    mx, my = np.clip(np.round(frame.to_model(np.array([x, y]))).astype(int), 0, [w256 - 1, h256 - 1])
    return logits, pred, masks, (int(mx), int(my))


def click_mask(session, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Mask from clicks without a box (the first positive click drives the extent estimate).

    Candidates are ranked by the model's IoU prediction, plus their agreement with the other
    candidates (a real object keeps its mask when the box around it changes size), plus how
    central the click lies in the mask (people click inside, usually near the middle).
    """
    pos = points[labels == 1]
    logits, pred, masks, (mx, my) = decode_candidates(session, float(pos[0][0]), float(pos[0][1]))
    ok = np.array([m[my, mx] for m in masks])
    if not ok.any():
        return np.zeros(session.image_shape, bool), 0.0, "click"
    cen = np.array([_centrality(m, mx, my) for m in masks])
    score = np.where(ok, pred[:, 0] + _consensus(masks, ok) + 0.5 * cen, -np.inf)
    i = int(np.argmax(score))
    return session.frame.logits_to_image(logits[i]) > 0, float(pred[i, 0]), "click-whole"
