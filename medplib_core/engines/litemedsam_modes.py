"""Free-form outlines and corrective clicks for the LiteMedSAM session.

Outline: the outline's bounding box goes through the box path; the model's mask is then kept
within a band around the outline (the user's intent), and the outline's core is always kept.

Corrective clicks edit the box the mask came from (grow it to a positive click, move an edge
past a negative click), re-decode, and are then honoured exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from .prompts import check_box, mask_box, rasterize_polygon
from ..errors import PromptError


def _disk(r: int) -> np.ndarray:
    r = max(1, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def outline(session, polygon, region) -> tuple[np.ndarray, float, str]:
    """Mask from a free-form outline (polygon vertices) or a painted region."""
    shape = session.image_shape
    if region is not None:
        shape_mask = np.asarray(region, bool)
        if shape_mask.shape != shape:
            raise PromptError(f"the painted region is {shape_mask.shape}, the slice is {shape}")
        if polygon is not None:
            shape_mask = shape_mask | rasterize_polygon(polygon, shape)
    else:
        shape_mask = rasterize_polygon(polygon, shape)
    box = mask_box(shape_mask)
    if box is None:
        raise PromptError("the outline encloses no pixel of the slice")
    box = check_box(box, shape)
    mask, score, path = session.box_mask(box)
    r = max(2, int(round(0.04 * np.sqrt(shape_mask.sum()))))
    u8 = shape_mask.astype(np.uint8)
    band = cv2.dilate(u8, _disk(r)) > 0
    core = cv2.erode(u8, _disk(r)) > 0
    return (mask & band) | core, score, f"outline-{path}"


def refine(session, current, points: np.ndarray, labels: np.ndarray, box=None):
    """Refine ``current`` (bool mask) with corrective positive (1) / negative (0) clicks.

    LiteMedSAM was trained with boxes only (feeding it clicks plus the mask as mask input
    measured worse than the mask alone), so clicks edit the box: a positive click outside the
    mask grows the box to reach it, a negative click inside moves the nearest box edge past
    it; the new box is decoded and the change is kept only where it honours the click.
    """
    shape = session.image_shape
    current = np.asarray(current, bool)
    if current.shape != shape:
        raise PromptError(f"the mask to refine is {current.shape}, the slice is {shape}")
    out, score = current.copy(), 0.0
    for (x, y), lab in zip(points, labels):
        xi, yi = int(round(min(max(x, 0), shape[1] - 1))), int(round(min(max(y, 0), shape[0] - 1)))
        if bool(out[yi, xi]) == bool(lab):
            continue  # this click is already satisfied
        out, score = (_grow if lab == 1 else _shrink)(session, out, xi, yi)
    if box is not None:
        x0, y0, x1, y1 = check_box(box, shape)
        inside = np.zeros(shape, bool)
        inside[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
        out &= inside
    return _honour_clicks(out, points, labels), score, "refine"


def _grow(session, mask: np.ndarray, x: int, y: int):
    h, w = mask.shape
    box = mask_box(mask)
    if box is None:
        from .single_click import click_mask

        m, sc, _ = click_mask(session, np.array([[x, y]], float), np.array([1]))
        return m, sc
    pad = max(2.0, 0.03 * max(box[2] - box[0], box[3] - box[1]))
    nb = (max(0.0, min(box[0], x - pad)), max(0.0, min(box[1], y - pad)),
          min(w - 1.0, max(box[2], x + pad)), min(h - 1.0, max(box[3], y + pad)))
    new, sc, _ = session.box_mask(nb)
    if new[y, x] and (new & mask).sum() >= 0.7 * mask.sum():
        return new, sc
    n, comp = cv2.connectedComponents(new.astype(np.uint8), connectivity=8)
    if new[y, x]:
        return mask | (comp == comp[y, x]), sc
    return mask, sc


def _shrink(session, mask: np.ndarray, x: int, y: int):
    x0, y0, x1, y1 = mask_box(mask)
    # move the box edge nearest to the click just past it
    d = {"x0": x - x0, "x1": x1 - x, "y0": y - y0, "y1": y1 - y}
    edge = min(d, key=d.get)
    nb = {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
    nb[edge] = x + 1 if edge == "x0" else x - 1 if edge == "x1" else y + 1 if edge == "y0" else y - 1
    if nb["x1"] - nb["x0"] < 2 or nb["y1"] - nb["y0"] < 2:
        return mask, 0.0
    new, sc, _ = session.box_mask((nb["x0"], nb["y0"], nb["x1"], nb["y1"]))
    if not new[y, x] and new.any():
        return new, sc
    return mask, sc


def _honour_clicks(mask: np.ndarray, points, labels) -> np.ndarray:
    """Make every click true: positives inside the mask, negatives outside it."""
    h, w = mask.shape
    out = mask.copy()
    for (x, y), lab in zip(points, labels):
        xi, yi = int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1)))
        if lab == 1 and not out[yi, xi]:  # the model would not include it: mark it at least
            disc = np.zeros((h, w), np.uint8)
            cv2.circle(disc, (xi, yi), 2, 1, -1)
            out |= disc > 0
        elif lab == 0 and out[yi, xi]:
            n, comp = cv2.connectedComponents(out.astype(np.uint8), connectivity=8)
            part = comp == comp[yi, xi]
            if part.sum() < 0.5 * out.sum():
                out &= ~part
            else:  # the click sits in the main body: cut a disc around it instead
                r = max(2, int(0.15 * np.sqrt(part.sum())))
                hole = np.zeros((h, w), np.uint8)
                cv2.circle(hole, (xi, yi), r, 1, -1)
                out &= hole == 0
    return out
