"""Bad inputs raise LoadError naming the path and the reason; nothing else escapes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import generate_uid
from test_io_support import ct_dataset, write_series

from medplib_core.errors import LoadError
from medplib_core.io import load
from medplib_core.io import dicom_pixels

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on broken files


def _raises(path, *words) -> LoadError:
    with pytest.raises(LoadError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg.lower(), msg
    return info.value


def test_missing_empty_and_junk(tmp_path) -> None:
    _raises(tmp_path / "nope.dcm", "no such file")
    (tmp_path / "empty.dcm").write_bytes(b"")
    _raises(tmp_path / "empty.dcm", "empty")
    (tmp_path / "junk.bin").write_bytes(b"hello world, certainly not an image" * 20)
    _raises(tmp_path / "junk.bin", "not a recognised format")
    (tmp_path / "fake.nii.gz").write_bytes(b"\x1f\x8b" + b"\0" * 100)
    _raises(tmp_path / "fake.nii.gz", "nifti")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    _raises(tmp_path / "fake.png")


def test_empty_folder_and_folder_without_dicom(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    _raises(tmp_path / "txt", "no dicom images")


def test_truncated_pixel_data(tmp_path) -> None:
    paths = write_series(tmp_path / "s", [0, 1, 2])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-37])
    err = _raises(paths[1], "truncated")
    assert err.path == str(paths[1])
    err = _raises(tmp_path / "s", "truncated")
    assert str(paths[1]) in str(err)


def test_truncated_compressed_pixel_data(tmp_path) -> None:
    from pydicom.data import get_testdata_file

    for name in ("emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm", "CT_small.dcm"):
        data = open(get_testdata_file(name), "rb").read()
        for frac in (0.4, 0.7, 0.98):
            p = tmp_path / f"cut_{frac}_{name}"
            p.write_bytes(data[: int(len(data) * frac)])
            _raises(p, "truncated")


def test_mixed_series_sizes_and_orientations(tmp_path) -> None:
    uid = generate_uid()
    write_series(tmp_path / "m", [0, 1], series_uid=uid, names=["a", "b"])
    write_series(tmp_path / "m", [2], series_uid=uid, names=["c"], rows=12)
    _raises(tmp_path / "m", "inconsistent series", "size")
    uid = generate_uid()
    write_series(tmp_path / "o", [0, 1], series_uid=uid, names=["a", "b"])
    write_series(tmp_path / "o", [2], series_uid=uid, names=["c"], iop=(0, 1, 0, 0, 0, -1))
    _raises(tmp_path / "o", "inconsistent series", "orientation")


def _no_pixels_file(path, sop_class: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)


def test_no_image_in_file(tmp_path) -> None:
    p = tmp_path / "sr.dcm"
    _no_pixels_file(p, "1.2.840.10008.5.1.4.1.1.88.11")
    _raises(p, "no image", "basic text sr")
    from pydicom.data import get_testdata_file

    _raises(get_testdata_file("rtstruct.dcm"), "no image", "rt structure set")
    _raises(get_testdata_file("DICOMDIR"), "no image", "dicomdir")
    (tmp_path / "only_sr").mkdir()
    _no_pixels_file(tmp_path / "only_sr" / "x.dcm", "1.2.840.10008.5.1.4.1.1.88.11")
    _raises(tmp_path / "only_sr", "no dicom images")


def test_unsupported_transfer_syntax_names_a_plugin(tmp_path, monkeypatch) -> None:
    p = tmp_path / "mpeg.dcm"
    ds = ct_dataset(p, ipp=(0, 0, 0))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([b"\0\0\1\xb3" + b"\0" * 60])
    ds["PixelData"].VR = "OB"
    ds.save_as(p, enforce_file_format=True)
    _raises(p, "unsupported transfer syntax", "mpeg2")

    class NoPlugin:
        is_available = False
        missing_dependencies = ["gdcm - requires gdcm>=3.0.10"]

    q = tmp_path / "j2k.dcm"
    ds = ct_dataset(q, ipp=(0, 0, 0))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(q, enforce_file_format=True)
    monkeypatch.setattr(dicom_pixels.pydicom.pixels, "get_decoder", lambda ts: NoPlugin())
    err = _raises(q, "not installed")
    assert "pylibjpeg-openjpeg" in str(err)


def test_undecodable_compressed_data(tmp_path) -> None:
    q = tmp_path / "bad_j2k.dcm"
    ds = ct_dataset(q, ipp=(0, 0, 0))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.save_as(q, enforce_file_format=True)
    _raises(q, "pixel data")


@pytest.mark.timeout(30)
def test_random_bytes_after_dicom_header_do_not_escape(tmp_path) -> None:
    rng = np.random.default_rng(1)
    good = write_series(tmp_path / "g", [0])[0].read_bytes()
    for n in range(30):
        cut = int(rng.integers(132, len(good)))
        data = bytearray(good[:cut])
        for _ in range(5):
            data[int(rng.integers(132, len(data)))] = int(rng.integers(0, 256))
        p = tmp_path / f"fuzz{n}.dcm"
        p.write_bytes(bytes(data))
        try:
            load(p)
        except LoadError as exc:
            assert str(p) in str(exc)


@pytest.mark.timeout(20)
def test_pipes_are_never_opened(tmp_path) -> None:
    import os

    write_series(tmp_path / "s", [0, 1])
    os.mkfifo(tmp_path / "s" / "pipe")
    vol = load(tmp_path / "s")  # the FIFO in the folder is skipped, not read (would block)
    assert vol.shape[0] == 2
    _raises(tmp_path / "s" / "pipe", "not a regular file")
