"""Box -> mask variants that cost only decoder time, on dev2d, against today's pipeline.

    python bench/box_variants.py [--manifest M] [--limit N]

Every variant decodes from the same cached embedding(s) the engine already has for the tight
box (the whole slice, or the crop-and-zoom region): today's single box (for a small box the
zoomed or the whole-slice view, whichever fills the box better), the zoomed view alone; the
three multimask outputs chosen by the IoU head (with and without the single-mask output); eight jittered boxes
(each edge moved by +-5 % of the box side) decoded as one batch and combined by the mean of
their logits; the box padding at 0 and 8 model pixels instead of 4; crop-and-zoom off. All
masks are clipped to the box grown by 10 % as the engine does. The last row is no rule but a
ceiling: the best Dice among every decoder output for the box (the single mask and the three
multimask outputs, in each view the box has), what a perfect choice among them would reach.
Printed per modality and for the two halves of the rows (even / odd row numbers): a change is
only worth keeping when it wins on both halves by a clear margin. Decoder time per variant is the median wall clock.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from medplib_core.engines.base import Prompt  # noqa: E402
from medplib_core.engines.prompts import dice, expand_box  # noqa: E402
from segmentation import DATA, load_case  # noqa: E402

JITTER = np.array([[-1, -1, 1, 1], [1, 1, -1, -1], [-1, 1, 1, -1], [1, -1, -1, 1],
                   [-1, 0, 1, 0], [0, -1, 0, 1], [1, 0, -1, 0], [0, 1, 0, -1]], float) * 0.05


def _clip(mask: np.ndarray, box, shape) -> np.ndarray:
    x0, y0, x1, y1 = expand_box(box, 0.1, shape, min_pad=2.0)
    keep = np.zeros_like(mask)
    keep[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
    return mask & keep


def variants(s, box) -> dict[str, tuple[np.ndarray, float]]:
    """Mask and decoder seconds per variant for one tight box on session ``s``."""
    shape = s.image_shape
    within = expand_box(box, 0.1, shape, min_pad=2.0)
    frame, emb = s.frame_for(box)
    out = {}

    t = time.perf_counter()
    out["today: one box"] = (s.predict(Prompt(box=box)).mask, time.perf_counter() - t)
    t = time.perf_counter()
    out["crop-and-zoom without box fit"] = (s.box_mask(box)[0], time.perf_counter() - t)

    t = time.perf_counter()
    logits, pred = s.decode(frame, emb, [box], multimask=True, within=within)
    dt = time.perf_counter() - t
    out["multimask, best predicted IoU"] = (_clip(logits[int(np.argmax(pred[0]))] > 0, box, shape), dt)

    t = time.perf_counter()
    single, p1 = s.decode(frame, emb, [box], within=within)
    dt += time.perf_counter() - t
    cands, scores = single + logits, np.concatenate([p1[0], pred[0]])
    out["single + multimask, best predicted IoU"] = (_clip(cands[int(np.argmax(scores))] > 0, box, shape), dt)

    w, h = box[2] - box[0], box[3] - box[1]
    jit = [tuple(np.clip(np.array(box) + d * [w, h, w, h], 0, [shape[1] - 1, shape[0] - 1] * 2))
           for d in JITTER]
    t = time.perf_counter()
    logits, _ = s.decode(frame, emb, [box] + jit, within=within)
    dt = time.perf_counter() - t
    out["9 jittered boxes, mean logits"] = (_clip(np.mean(logits, 0) > 0, box, shape), dt)

    eng = s.engine
    keep = eng.settings.box_pad
    for pad in (0.0, 8.0):
        eng.settings.box_pad = pad
        t = time.perf_counter()
        out[f"box padding {pad:.0f} model px (today 4)"] = (s.box_mask(box)[0], time.perf_counter() - t)
    eng.settings.box_pad = keep
    eng.settings.zoom = False
    t = time.perf_counter()
    out["no crop-and-zoom"] = (s.box_mask(box)[0], time.perf_counter() - t)
    eng.settings.zoom = True
    return out


def decoder_outputs(s, box) -> list[np.ndarray]:
    """Every mask the decoder offers for ``box``: single and multimask outputs in each view
    (the crop-and-zoom region when the box takes that path, and the whole slice)."""
    shape = s.image_shape
    within = expand_box(box, 0.1, shape, min_pad=2.0)
    views = [s.frame_for(box)]
    if not views[0][0].is_whole:
        views.append((s.frame, s.embedding))
    out = []
    for frame, emb in views:
        for multimask in (False, True):
            logits, _ = s.decode(frame, emb, [box], multimask=multimask, within=within)
            out += [_clip(lg > 0, box, shape) for lg in logits]
    return out


CEILING = "ceiling: the best of every decoder output (no rule)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default=str(DATA / "dev2d" / "manifest.csv"))
    ap.add_argument("--min-frac", type=float, default=0.95)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    if not Path(a.manifest).is_file():
        print(f"manifest not found: {a.manifest}", file=sys.stderr)
        return 2
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    rows = [r for r in csv.DictReader(open(a.manifest)) if float(r["largest_cc_frac"]) >= a.min_frac]
    rows = rows[: a.limit] if a.limit else rows
    eng = LiteMedSAMEngine(cache_bytes=2**30)
    root = Path(a.manifest).parent
    res: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    secs: dict[str, list[float]] = defaultdict(list)
    for i, r in enumerate(rows):
        img, gt, box = load_case(root, r)
        s = eng.encode(img)
        s.predict(Prompt(box=box))  # encodes the zoom region too, if the box takes that path
        for name, (mask, dt) in variants(s, box).items():
            for key in (r["modality"], "ALL", "half A" if i % 2 == 0 else "half B"):
                res[name][key].append(dice(mask, gt))
            secs[name].append(dt)
        best = max(dice(m, gt) for m in decoder_outputs(s, box))
        for key in (r["modality"], "ALL", "half A" if i % 2 == 0 else "half B"):
            res[CEILING][key].append(best)
        secs[CEILING].append(0.0)
    mods = sorted({m for d in res.values() for m in d} - {"ALL", "half A", "half B"})
    cols = mods + ["half A", "half B"]
    print(f"encoder {eng.encoder.name}, decoder {eng.decoder.name}; {len(rows)} rows of {a.manifest}")
    print(f"| variant | " + " | ".join(cols) + " | mean | Δ vs today | decoder ms |")
    print("|---|" + "---|" * (len(cols) + 3))
    base = np.mean(res["today: one box"]["ALL"])
    for name, d in res.items():
        cells = " | ".join(f"{np.mean(d[c]):.3f} ({len(d[c])})" if d.get(c) else "-" for c in cols)
        m = np.mean(d["ALL"])
        ms = "-" if name == CEILING else f"{np.median(secs[name]) * 1000:.0f}"
        print(f"| {name} | {cells} | {m:.3f} | {m - base:+.3f} | {ms} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
