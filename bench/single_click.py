"""Single click -> mask: speed and Dice of decoder variants, in the same process, interleaved.

    python bench/single_click.py [--manifest M] [--limit N] [--reps 3] [--max-isa AVX2]

Over the dev2d rows (``largest_cc_frac >= 0.95``), one engine (encoder and decoder as ``auto``
picks them) encodes each slice once; then every variant answers the same click (the mask's
interior point farthest from its border, as in bench/segmentation.py) and the same tight box
against the cached embedding, variants interleaved click by click, ``--reps`` times per row.
Variants differ only in the mask decoder's graph: ``DecoderCore(fold=False)`` (v2: every
attention projects the 4096 image tokens), ``fold=True`` (the image tokens are scored raw after
the first layer) as one graph, and the same split in two (`split_decoder`: the image side is
computed once per embedding and cached; ``auto`` uses this where the decoder runs in fp32), all
through OpenVINO at the precision ``auto`` picked. Printed per variant: click -> mask median, 90th percentile and CPU time per click
(``time.process_time``, all threads; other load on a shared machine does not inflate it), the
ratios against the first variant, box -> mask median, and single-click Dice over all rows, per
modality and for the two halves (even / odd rows), and below them the *oracles*: the Dice of the
best of the click's candidate masks that hold the click (what a perfect ranking would reach), of
the first look and of both looks (`single_click`). ``--max-isa AVX2`` emulates a CPU without
AVX-512 as bench/segmentation.py does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from segmentation import DATA, load_case, load_rows, machine_line, checked_or_rerun  # noqa: E402


def decoder_variants(engine) -> dict[str, object]:
    """Name -> mask-decoder backend, all OpenVINO at the precision ``auto`` picked: the graph
    before the fold (v2), the folded graph in one piece, and in two (image side cached)."""
    from medplib_core.engines.fast_decoder import DecoderCore, OpenVinoDecoder, export_decoder_onnx
    from medplib_core.engines.split_decoder import SplitOpenVinoDecoder, export_split_onnx
    from medplib_core.threads import inference_threads

    today = engine.decoder.backend
    if not today.name.startswith("openvino"):
        raise SystemExit(f"the engine's decoder is {today.name}; this benchmark compares OpenVINO graphs")
    precision, sha = today.name.split("-", 1)[1], engine.info.weights_sha256
    out = {}
    for fold, label in ((False, "projected"), (True, "folded, one graph")):
        core = DecoderCore(engine.net, fold=fold).eval()
        dec = OpenVinoDecoder(export_decoder_onnx(core, sha), inference_threads(), precision)
        out[f"{label} (v{core.version}), {dec.name}"] = dec
    core = DecoderCore(engine.net).eval()
    dec = SplitOpenVinoDecoder(*export_split_onnx(core, sha), inference_threads(), precision)
    out[f"folded, image side cached (v{core.version}), {dec.name}"] = dec
    return out


def run(args) -> int:
    import medplib_core.engines  # noqa: F401  (the thread policy, before PyTorch loads)
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.litemedsam import LiteMedSAMEngine, decoder_state_key
    from medplib_core.engines.prompts import dice, interior_point

    print(machine_line())
    engine = LiteMedSAMEngine()
    if engine.net is None:
        raise SystemExit("the engine runs from model files; run with PyTorch installed")
    variants, own = decoder_variants(engine), engine.decoder.backend
    print(f"engine: encoder {engine.encoder.name}, decoder {engine.decoder.name} (auto: folded graph in fp32 only); "
          f"variants: {', '.join(variants)}")
    root = Path(args.manifest).parent
    rows = load_rows(args)
    click_t, click_cpu, box_t, state_t = defaultdict(list), defaultdict(list), defaultdict(list), []
    dices: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(rows):
        img, gt, box = load_case(root, r)
        s = engine.encode(img)
        click = Prompt(points=[interior_point(gt)], point_labels=[1])
        s.predict(Prompt(box=box))  # any zoom region the box needs is encoded now, not timed
        for backend in variants.values():  # each variant's decoder state (if any) once, timed apart
            if getattr(backend, "state_tag", None):
                t = time.perf_counter()
                engine.cache.put(decoder_state_key(s.key, backend.state_tag), backend.image_state(s.embedding,
                                                                                     engine.decoder.embedder.dense))
                state_t.append(time.perf_counter() - t)
        for rep in range(args.reps):
            for name, backend in variants.items():
                engine.decoder.backend = backend
                t, c = time.perf_counter(), time.process_time()
                res = s.predict(click)
                click_t[name].append(time.perf_counter() - t)
                click_cpu[name].append(time.process_time() - c)
                t = time.perf_counter()
                s.predict(Prompt(box=box))
                box_t[name].append(time.perf_counter() - t)
                if rep == 0:
                    half = "half A" if i % 2 == 0 else "half B"
                    for key in ("ALL", r["modality"], half):
                        dices[name][key].append(dice(res.mask, gt))
        engine.decoder.backend = own
        first, both = oracle_dice(s, click.points[0], gt)
        for key in ("ALL", r["modality"], "half A" if i % 2 == 0 else "half B"):
            dices[ORACLE][key].append(first)
            dices[ORACLE_BOTH][key].append(both)
        if args.verbose:
            print(f"[{i + 1}/{len(rows)}] {r['modality']} {r['target']}", flush=True)
    engine.decoder.backend = own
    print_table(variants, click_t, click_cpu, box_t, dices, len(rows), args.reps)
    if state_t:
        print(f"\nimage side (the cached decoder state), once per embedding: {np.median(state_t) * 1000:.0f} ms "
              f"median (p90 {np.percentile(state_t, 90) * 1000:.0f}); the app computes it while pre-encoding, "
              f"else at the first prompt on a slice")
    return 0


ORACLE = "oracle: the best first-look candidate holding the click"
ORACLE_BOTH = "oracle: the best of both looks"


def oracle_dice(session, point, gt: np.ndarray) -> tuple[float, float]:
    """Dice of the best of the click's candidate masks that contain the click (0 if none does),
    of the first look and of both looks."""
    from medplib_core.engines.prompts import dice
    from medplib_core.engines.single_click import decode_candidates, extent_candidates, second_look

    x, y = float(point[0]), float(point[1])
    first = extent_candidates(session.image, x, y)
    out = []
    for boxes in (first, first + second_look(session.image, x, y, first)):
        logits, _, masks, (mx, my) = decode_candidates(session, x, y, boxes)
        out.append(max((dice(session.frame.logits_to_image(lg) > 0, gt) for lg, m in zip(logits, masks)
                        if m[my, mx]), default=0.0))
    return out[0], out[1]


def print_table(variants, click_t, click_cpu, box_t, dices, n_rows: int, reps: int) -> None:
    first = list(variants)[0]
    base_t, base_c = np.median(click_t[first]), np.median(click_cpu[first])
    print(f"\nclick -> mask, embedding cached ({n_rows} rows x {reps} clicks per variant, interleaved; "
          f"wall clock on a shared machine: compare the ratios and CPU columns)")
    print("| decoder variant, backend | click median ms | p90 | CPU ms / click | vs first (wall) | "
          "vs first (CPU) | box -> mask median ms |")
    print("|---|---|---|---|---|---|---|")
    for name in variants:
        t, c = np.array(click_t[name]), np.array(click_cpu[name])
        print(f"| {name} | {np.median(t) * 1000:.0f} | {np.percentile(t, 90) * 1000:.0f} | "
              f"{np.median(c) * 1000:.0f} | {np.median(t) / base_t:.2f}x | {np.median(c) / base_c:.2f}x | "
              f"{np.median(box_t[name]) * 1000:.0f} |")
    cols = sorted(k for k in dices[first] if k not in ("ALL", "half A", "half B")) + ["half A", "half B", "ALL"]
    print(f"\nsingle-click Dice (rows per column: {', '.join(f'{k} {len(dices[first][k])}' for k in cols)})")
    print("| decoder variant | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name in list(variants) + [ORACLE, ORACLE_BOTH]:
        print(f"| {name} | " + " | ".join(f"{np.mean(dices[name][k]):.3f}" for k in cols) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, kw in (("--manifest", {"default": str(DATA / "dev2d" / "manifest.csv")}),
                     ("--min-frac", {"type": float, "default": 0.95}),
                     ("--limit", {"type": int, "default": 0, "help": "only the first N rows"}),
                     ("--reps", {"type": int, "default": 3, "help": "clicks per row and variant"}),
                     ("--max-isa", {"help": "emulate an older CPU, e.g. AVX2 (see bench/segmentation.py)"}),
                     ("--verbose", {"action": "store_true"})):
        ap.add_argument(flag, **kw)
    args = ap.parse_args(argv)
    stop = checked_or_rerun(args, __file__, argv)
    if stop is not None:
        return stop
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
