"""One click -> mask for a box-trained model.

LiteMedSAM was trained with boxes, so a click alone is ambiguous. We estimate the object's
extent locally and let the model judge:

1. the first look: a flood fill of the (smoothed) displayed slice from the click, plus squares
   of three sizes centred on the click;
2. the candidates are decoded in one batch against the cached whole-slice embedding, mask
   logits only inside the candidates' union (the click itself is not fed to the model:
   LiteMedSAM's point prompts measured worse); masks that miss the click are dropped, the rest
   ranked by predicted IoU, agreement between them, how central the click is in the mask, and
   how unlike its surroundings the mask is in the image embedding (`embedding_contrast`);
3. the second look (the engine's ``click_second_look``, on by default): when the model's IoU
   estimate for the pick is below `UNSURE` (about half the clicks on dev2d), flood fills at
   three finer tolerances and four more square sizes are decoded too, and all are ranked again.

Every candidate costs a decoder pass over all 64x64 image tokens (11-19 ms on two cores), so
the first look is kept to four. The ranking, not the candidates, held the Dice back: the best of
the first four would give 0.821 and the best of all eleven 0.861, while predicted IoU, agreement
and centrality picked 0.753 of four (0.770 of eleven). SAM's stability score, the gradient along
the mask's border, the grey-level contrast with a ring around the mask and how much of the box
edge the mask covers moved the two halves of dev2d in opposite directions or by less than 0.01.
The contrast in the image embedding (the mask's mean token against a ring two tokens wide) is
the first signal that held on both halves, with fp32 and bf16 embeddings (and, with bf16, for
ring widths of one to four tokens): 0.758 -> 0.764 with the fp32 encoder (halves 0.789 / 0.726
-> 0.789 / 0.739), 0.758 -> 0.767 with bf16 (0.796 / 0.719 -> 0.793 / 0.740). The second look
raises it to 0.766 (fp32) and 0.782 (bf16; halves 0.808 / 0.754) and costs 45 % of the clicks
a second batch. It was opt-in while that took a click past 100 ms (103 ms median, 232 ms at the
90th percentile); with NumPy's BLAS on one thread (`medplib_core.threads`) click -> mask is
76 ms median and 177 ms at the 90th percentile with it, 65 / 77 ms without (bench/segmentation.py
prints both rows; Zen 4, two cores, 2026-12-04), so it is on by default. Earlier measurements
that still hold: re-decoding the winner's own box (0.737), three candidates (at most 0.732),
early exit when two candidates agree (they rarely do), the multimask outputs, the click as a
point prompt next to the box and averaging the agreeing masks gained nothing. Also tried on
2026-12-04: boxes from a flood fill of the image embedding (tokens similar to the clicked one)
as a fifth candidate raised the oracle to 0.833-0.836 but the ranking to at most 0.767.
"""

from __future__ import annotations

import cv2
import numpy as np

from .prompts import Box, expand_box, iou, mask_box

TOLERANCES = (32,)  # grey levels of the displayed (windowed) slice
SQUARES = (0.1, 0.2, 0.35)  # side as a fraction of the slice's longest side
MORE_TOLERANCES = (6, 12, 20)  # the second look, when the model is unsure of the first
MORE_SQUARES = (0.05, 0.15, 0.25, 0.5)
UNSURE = 0.88  # the model's IoU estimate for the first look's pick below this: look again
CONTRAST = 0.5  # weight of the mask's contrast with its surroundings in the image embedding
MAX_AREA = 0.6  # flood fills larger than this fraction of the slice are leaks


def extent_candidates(image: np.ndarray, x: float, y: float, tolerances=TOLERANCES,
                      squares=SQUARES) -> list[Box]:
    """Candidate boxes around a click from region growing and fixed scales."""
    h, w = image.shape[:2]
    xi, yi = int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1)))
    sigma = max(0.8, max(h, w) / 512.0)
    smooth = cv2.GaussianBlur(image, (0, 0), sigma)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    boxes: list[Box] = []
    for tol in tolerances:
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
    for f in squares:
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


def embedding_contrast(embedding: np.ndarray, masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """How unlike its surroundings each mask is in the image embedding: one minus the cosine
    between the mean (unit) token inside the mask and the mean token of a ring two tokens wide
    around it, within the image. Masks at model resolution (``size`` of the 256x256 input)."""
    emb = np.asarray(embedding, np.float32).reshape(-1, *np.shape(embedding)[-2:])  # (C, 64, 64)
    grid = emb.shape[-1]
    tokens = emb.reshape(len(emb), -1)
    norms = np.sqrt(np.einsum("ct,ct->t", tokens, tokens)) + 1e-6  # each token's length
    h, w = size
    step = 256 // grid
    inside_image = np.zeros((grid, grid), np.float32)
    inside_image[:-(-h // step), :-(-w // step)] = 1.0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    weights = np.zeros((2 * len(masks), grid * grid), np.float32)  # each mask's tokens, then its ring's
    for i, m in enumerate(masks):
        full = np.zeros((256, 256), np.float32)
        full[:h, :w] = m
        share = full.reshape(grid, step, grid, step).mean((1, 3))  # the mask's share of each token
        ring = np.clip(cv2.dilate((share > 0.5).astype(np.uint8), kernel) - share, 0, 1) * inside_image
        weights[2 * i], weights[2 * i + 1] = share.ravel(), ring.ravel()
    sums = (weights / norms) @ tokens.T  # (2N, C): the summed unit tokens of each mask and ring
    a, b = sums[0::2], sums[1::2]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)
    empty = (weights[0::2].sum(1) < 1e-3) | (weights[1::2].sum(1) < 1e-3)
    return np.where(empty, 0.0, 1.0 - cos).astype(np.float64)


def decode_candidates(session, x: float, y: float, boxes: list[Box] | None = None):
    """Candidate boxes (the click's first look by default) decoded in one batch against the cached
    whole-slice embedding: ``(logits, predicted IoU, masks at model resolution, the click at
    model resolution)``."""
    cands = boxes if boxes is not None else extent_candidates(session.image, x, y)
    frame = session.frame
    within = (min(b[0] for b in cands), min(b[1] for b in cands), max(b[2] for b in cands),
              max(b[3] for b in cands))
    within = expand_box(within, 0.1, session.image_shape, min_pad=2.0)
    logits, pred = session.decode(frame, session.embedding, cands, raw=True, within=within)
    h256, w256 = frame.size
    masks = [lg[:h256, :w256] > 0 for lg in logits]  # judged at model resolution (fast)
    mx, my = np.clip(np.round(frame.to_model(np.array([x, y]))).astype(int), 0, [w256 - 1, h256 - 1])
    return list(logits), pred, masks, (int(mx), int(my))


def second_look(image: np.ndarray, x: float, y: float, first: list[Box]) -> list[Box]:
    """The boxes of the second look that are not (nearly) boxes of the first."""
    both = _dedupe(first + extent_candidates(image, x, y, MORE_TOLERANCES, MORE_SQUARES))
    return both[len(first):]


def rank(session, pred: np.ndarray, masks: list[np.ndarray], mx: int, my: int) -> np.ndarray:
    """Each candidate's score (-inf where its mask misses the click)."""
    ok = np.array([m[my, mx] for m in masks])
    if not ok.any():
        return np.full(len(masks), -np.inf)
    cen = np.array([_centrality(m, mx, my) for m in masks])
    con = embedding_contrast(session.embedding, masks, session.frame.size)
    return np.where(ok, pred[:, 0] + _consensus(masks, ok) + 0.5 * cen + CONTRAST * con, -np.inf)


def click_mask(session, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Mask from clicks without a box (the first positive click drives the extent estimate).

    Candidates are ranked by the model's IoU prediction, plus their agreement with the other
    candidates (a real object keeps its mask when the box around it changes size), plus how
    central the click lies in the mask (people click inside, usually near the middle), plus how
    unlike its surroundings the mask is in the image embedding. With the engine's
    ``click_second_look`` setting (the default), when the model's IoU estimate for the pick is
    below `UNSURE`, the second look's boxes are decoded too and all re-ranked.
    """
    pos = points[labels == 1]
    x, y = float(pos[0][0]), float(pos[0][1])
    first = extent_candidates(session.image, x, y)
    logits, pred, masks, (mx, my) = decode_candidates(session, x, y, first)
    score = rank(session, pred, masks, mx, my)
    i = int(np.argmax(score))
    settings = getattr(getattr(session, "engine", None), "settings", None)
    if getattr(settings, "click_second_look", True) and (not np.isfinite(score[i]) or pred[i, 0] < UNSURE):
        more = second_look(session.image, x, y, first)
        if more:
            lg2, pred2, masks2, _ = decode_candidates(session, x, y, more)
            logits, masks = logits + lg2, masks + masks2
            pred = np.concatenate([pred, pred2])
            score = rank(session, pred, masks, mx, my)
            i = int(np.argmax(score))
    if not np.isfinite(score[i]):
        return np.zeros(session.image_shape, bool), 0.0, "click"
    return session.frame.logits_to_image(logits[i]) > 0, float(pred[i, 0]), "click-whole"
