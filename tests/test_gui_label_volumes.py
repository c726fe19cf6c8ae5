"""Issue 13 item 9 in the real window: the labels panel shows millilitres only where the scan has
millimetres. A brush stroke on a PNG (pixels, no physical size) shows "—" for the volume; the
same stroke on a NIfTI with 0.8 × 0.8 × 2.5 mm voxels shows voxels × 1.6 mm³."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from app.automation import image_point  # noqa: E402
from app.labels_panel import COL_VOLUME, COL_VOXELS  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


def paint(qtbot, w):
    cv = w.viewer.active.canvas
    h, wd = cv.shape
    qtbot.keyClick(cv, Qt.Key.Key_D)
    qtbot.mouseClick(cv, Qt.MouseButton.LeftButton, pos=image_point(cv, wd * 0.5, h * 0.5))
    qtbot.waitUntil(lambda: sum(w.session.counts.values()) > 0, timeout=10000)
    table = w.labels_panel.table
    return int(table.item(0, COL_VOXELS).text().replace(",", "")), table.item(0, COL_VOLUME)


def test_a_png_shows_no_millilitres(qtbot, make_window, tmp_path):
    from skimage import data
    import cv2

    png = tmp_path / "camera.png"
    cv2.imwrite(str(png), data.camera())
    w = make_window(scan=png)
    assert w.session.volume.voxel_volume_ml is None
    n, item = paint(qtbot, w)
    assert n > 0 and item.text() == "—" and "no physical spacing" in item.toolTip()


def test_a_nifti_shows_its_voxel_size(qtbot, make_window, tmp_path):
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    img = sitk.GetImageFromArray(rng.integers(0, 200, (6, 96, 96)).astype(np.int16))
    img.SetSpacing((0.8, 0.8, 2.5))
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(img, str(path))
    w = make_window(scan=path)
    n, item = paint(qtbot, w)
    mm3 = n * 0.8 * 0.8 * 2.5
    want = f"{mm3:.0f} mm³" if mm3 < 1000 else f"{mm3 / 1000:.2f} ml"
    assert item.text() == want and item.toolTip() == ""


def test_a_long_label_name_is_whole_in_its_tooltip(qtbot, make_window, tmp_path):
    """The name column elides long names at the default dock width; hovering shows the whole."""
    from skimage import data
    import cv2

    from app.labels_panel import COL_NAME

    png = tmp_path / "camera.png"
    cv2.imwrite(str(png), data.camera())
    w = make_window(scan=png)
    long_name = "portal_vein_and_splenic_vein_confluence"
    w.session.add_label(long_name)
    item = w.labels_panel.table.item(0, COL_NAME)
    assert item.text() == long_name
    assert item.toolTip().splitlines()[0] == long_name
