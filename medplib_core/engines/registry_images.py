"""Real images that come with installed packages, displayed as the application would show them.

Used to calibrate and to check accelerated encoders (never the project's ../shared data): the
DICOM test files of pydicom and pydicom-data (CT, MR, ultrasound, radiographs, secondary
captures) and, when scikit-image is installed, its sample photographs and micrographs. CT is
shown in a soft-tissue window, everything else min-max scaled (0.5-99.5th percentile), as
``uint8`` ``(H, W)`` or ``(H, W, 3)``, like the slices the viewer hands to an engine.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Real scans of several modalities (pydicom ships the small ones, pydicom-data the others).
DICOM_FILES = (
    "693_UNCR.dcm",  # CT head, 512x512
    "liver.dcm",  # CT abdomen (multi-frame)
    "eCT_Supplemental.dcm",  # enhanced CT
    "CT_small.dcm",
    "MR2_UNCR.dcm",  # MR, 1024x1024
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "US1_UNCR.dcm",  # ultrasound, colour
    "OBXXXX1A.dcm",  # obstetric ultrasound
    "gdcm-US-ALOKA-16.dcm",
    "color3d_jpeg_baseline.dcm",  # colour ultrasound cine
    "RG1_UNCR.dcm",  # radiograph
    "RG3_UNCR.dcm",  # mammogram
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "SC_rgb.dcm",
)
SKIMAGE_FILES = ("retina.jpg", "ihc.png", "cell.png", "coffee.png", "chelsea.png", "astronaut.png",
                 "camera.png", "coins.png")


def _dicom_display(path: str) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        a = a[frames // 2]
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 3:
        if str(getattr(ds, "PhotometricInterpretation", "RGB")).startswith("YBR"):
            from pydicom.pixels import convert_color_space

            a = convert_color_space(a, ds.PhotometricInterpretation, "RGB")
        return _minmax(a.astype(np.float32))
    a = a.astype(np.float32)
    if str(getattr(ds, "Modality", "")) == "CT":
        hu = a * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
        return np.clip((hu + 160.0) * 255.0 / 400.0, 0, 255).astype(np.uint8)  # W 400 / L 40
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        a = a.max() - a
    return _minmax(a)


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) * 255.0 / max(float(hi - lo), 1e-6), 0, 255).astype(np.uint8)


def registry_image_paths() -> list[Path]:
    """The files available on this installation, in a fixed order."""
    out: list[Path] = []
    try:
        from pydicom.data import get_testdata_file
    except ImportError:  # pragma: no cover - pydicom is a dependency
        get_testdata_file = None
    if get_testdata_file is not None:
        for name in DICOM_FILES:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p = get_testdata_file(name, download=False)
            except Exception:  # pydicom may try a download for unknown names; never here
                p = None
            if p:
                out.append(Path(p))
    try:
        import skimage.data

        root = Path(skimage.data.__file__).parent
        out += [root / n for n in SKIMAGE_FILES if (root / n).is_file()]
    except ImportError:
        pass
    return out


def load_display(path: Path) -> np.ndarray:
    """One registry file as a displayed ``uint8`` slice."""
    if path.suffix.lower() == ".dcm":
        return _dicom_display(str(path))
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def registry_images() -> list[tuple[str, np.ndarray]]:
    """``(name, displayed slice)`` for every registry image that loads here."""
    out = []
    for p in registry_image_paths():
        try:
            out.append((p.name, load_display(p)))
        except Exception as exc:  # a codec missing here: skip that file
            log.info("registry image %s skipped: %s", p.name, exc)
    return out


def fingerprint(paths: list[Path]) -> str:
    """A short hash of the file names and sizes (part of cache keys built on these images)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size};".encode())
    return h.hexdigest()[:12]
