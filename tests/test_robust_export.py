"""Exports as one detectable commit, every write failure an ExportError, no temporaries left,
file modes from the umask, PNG masks viewers can show, label import by claimed format only
(issue 19 items 6, 9 (SEG to a folder that cannot be written), 11; issue 13 item 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medplib_core.annotation import LabelSet
from medplib_core.errors import ExportError
from medplib_core.export import export_labels, import_labels, sidecar_path, write_png_labels
from medplib_core.export.atomic import atomic_write_text, remove_stale_temporaries
from medplib_core.export.sidecar import sidecar_matches
from medplib_core.volume import SourceInfo, Volume

REPO = Path(__file__).resolve().parents[1]


def _scan(shape=(4, 6, 8)) -> Volume:
    return Volume(np.zeros(shape, np.int16), spacing=(0.8, 0.9, 2.0), origin=(10.0, -5.0, 3.0),
                  source=SourceInfo(path="scan.nii.gz", kind="nifti"))


def _labels(shape=(4, 6, 8), value=1) -> tuple[np.ndarray, LabelSet]:
    ls = LabelSet()
    ls.add("liver")
    ls.add("spleen")
    arr = np.zeros(shape, np.uint16)
    arr[min(1, shape[0] - 1):3, 2:4, 3:6] = value
    return arr, ls


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ----- 6. the label map and its sidecar are one commit --------------------------------------
def test_sidecar_records_the_label_files_checksum(tmp_path) -> None:
    arr, ls = _labels()
    out = export_labels(tmp_path / "seg.nii.gz", arr, _scan(), ls)
    side = json.loads(sidecar_path(out).read_text())
    assert side["label_file"] == "seg.nii.gz" and len(side["label_sha256"]) == 64
    assert sidecar_matches(out) is True
    assert not _partials(tmp_path)


_KILL_AFTER_FIRST_RENAME = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_robust_export import _labels, _scan
    from medplib_core.export import export_labels
    real = os.replace
    def replace_then_die(src, dst):  # the process is killed right after the label map's rename
        real(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace_then_die
    arr, ls = _labels(value=2)
    export_labels({target!r}, arr, _scan(), ls)
""")


def test_a_kill_between_the_two_renames_is_detected_and_cleaned(tmp_path) -> None:
    arr, ls = _labels(value=1)
    target = tmp_path / "seg.nii.gz"
    export_labels(target, arr, _scan(), ls)
    code = _KILL_AFTER_FIRST_RENAME.format(tests=str(REPO / "tests"), target=str(target))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == -signal.SIGKILL
    assert _partials(tmp_path), "the killed export should have left its sidecar temporary"
    assert sidecar_matches(target) is False  # new label map, old sidecar: detectable
    imported = import_labels(target, _scan())
    assert int(imported.array.max()) == 2
    assert any("another version" in n for n in imported.notes)
    export_labels(target, arr, _scan(), ls)  # the next export removes the dead writer's files
    assert not _partials(tmp_path) and sidecar_matches(target) is True


_EXPORT_FOREVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_robust_export import _labels, _scan
    from medplib_core.export import export_labels
    n = 0
    while True:
        n += 1
        arr, ls = _labels(value=1 + n % 2)
        export_labels({target!r}, arr, _scan(), ls)
""")


def test_random_kills_leave_consistent_or_detectable_pairs(tmp_path) -> None:
    import random

    target = tmp_path / "seg.nii.gz"
    arr, ls = _labels()
    export_labels(target, arr, _scan(), ls)
    rng = random.Random(19)
    code = _EXPORT_FOREVER.format(tests=str(REPO / "tests"), target=str(target))
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        time.sleep(2.5 + rng.random() * 1.5)  # imports, then some exports, then a kill
        proc.kill()
        proc.wait()
        side = json.loads(sidecar_path(target).read_text())  # never torn
        imported = import_labels(target, _scan())  # never torn
        matches = sidecar_matches(target)
        assert matches in (True, False)
        if matches:  # a committed pair: the sidecar describes this very label map
            for lab in side["labels"]:
                assert lab["voxels"] == int(np.count_nonzero(imported.array == lab["value"]))
    export_labels(target, arr, _scan(), ls)
    assert not _partials(tmp_path)


def test_a_failure_writing_the_sidecar_leaves_the_old_pair(tmp_path) -> None:
    """Files may not grow past a few kB (RLIMIT_FSIZE): the label map fits, the sidecar with a
    large provenance does not. The export fails as a whole; the old pair stays."""
    arr, ls = _labels(value=1)
    target = tmp_path / "seg.nii.gz"
    export_labels(target, arr, _scan(), ls)
    before = (target.read_bytes(), sidecar_path(target).read_bytes())
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from test_robust_export import _labels, _scan
        from medplib_core.errors import ExportError
        from medplib_core.export import export_labels
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        arr, ls = _labels(value=2)
        try:
            export_labels({str(target)!r}, arr, _scan(), ls, extra={{"note": "x" * 20000}})
        except ExportError as exc:
            print("EXPORT ERROR", exc)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120, text=True,
                         capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "EXPORT ERROR" in res.stdout and "seg.json" in res.stdout, res.stdout + res.stderr
    assert (target.read_bytes(), sidecar_path(target).read_bytes()) == before
    assert not _partials(tmp_path)


@pytest.mark.parametrize("name", ["seg.nii.gz", "mask.png"])
def test_writing_into_a_folder_that_cannot_exist_is_an_export_error(tmp_path, name) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    shape = (1, 6, 8) if name.endswith(".png") else (4, 6, 8)
    arr, ls = _labels(shape)
    with pytest.raises(ExportError, match="could not write"):
        export_labels(tmp_path / "file.txt" / name, arr, _scan(shape), ls)


def test_dicom_seg_into_a_folder_that_cannot_be_written_is_an_export_error(tmp_path) -> None:
    from pydicom.data import get_testdata_file

    from medplib_core.io import load

    vol = load(get_testdata_file("CT_small.dcm"))
    arr, ls = _labels(vol.shape)
    arr[0, 10:20, 10:20] = 1
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(ExportError, match="could not write the DICOM SEG"):
        export_labels(tmp_path / "file.txt" / "seg.dcm", arr, vol, ls)
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(ExportError):
                export_labels(ro / "seg.dcm", arr, vol, ls)
        finally:
            ro.chmod(0o755)
    out = export_labels(tmp_path / "seg.dcm", arr, vol, ls)
    assert sidecar_matches(out) is True


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".seg.nii.gz.{dead.pid}-0123abcd.partial.nii.gz"
    live = tmp_path / f".seg.nii.gz.{os.getpid()}-89abcdef.partial.nii.gz"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


# ----- 13.6: modes from the umask ----------------------------------------------------------------
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_allows(tmp_path, mask, mode) -> None:
    from medplib_core.project import Project, save_project

    old = os.umask(mask)
    try:
        arr, ls = _labels()
        out = export_labels(tmp_path / "seg.nii.gz", arr, _scan(), ls)
        atomic_write_text(tmp_path / "note.txt", "x")
        pj = save_project(tmp_path / "p.medplib", Project(scan={}, labels=ls, label_array=arr))
    finally:
        os.umask(old)
    for p in (out, sidecar_path(out), tmp_path / "note.txt", pj, *pj.parent.glob("*.npz")):
        assert p.stat().st_mode & 0o777 == mode, p


# ----- 13.6: PNG masks a viewer shows; import of old and new --------------------------------------
def _image_scan() -> Volume:
    return Volume(np.zeros((1, 6, 8), np.uint8), physical_spacing=False,
                  source=SourceInfo(path="a.png", kind="image"))


def test_one_label_png_is_0_255_and_imports_back_to_its_value(tmp_path) -> None:
    arr, ls = _labels((1, 6, 8), value=2)
    written = write_png_labels(tmp_path / "mask.png", arr, _image_scan(), ls)
    with Image.open(written[0]) as im:
        assert im.mode == "L" and sorted(np.unique(np.array(im))) == [0, 255]
    back = import_labels(written[0], _image_scan())
    np.testing.assert_array_equal(back.array, arr)
    assert back.labels[2].name == "spleen"


def test_several_labels_png_is_an_indexed_palette_image(tmp_path) -> None:
    arr, ls = _labels((1, 6, 8), value=1)
    arr[0, 0, 0:3] = 2
    written = write_png_labels(tmp_path / "mask.png", arr, _image_scan(), ls)
    with Image.open(written[0]) as im:
        assert im.mode == "P"
        pal = im.getpalette()
        assert tuple(pal[3:6]) == ls[1].color and tuple(pal[6:9]) == ls[2].color
    np.testing.assert_array_equal(import_labels(written[0], _image_scan()).array, arr)


def test_old_0_1_masks_still_import(tmp_path) -> None:
    plane = np.zeros((6, 8), np.uint8)
    plane[2:4, 3:6] = 1
    Image.fromarray(plane).save(tmp_path / "old.png")
    np.testing.assert_array_equal(import_labels(tmp_path / "old.png", _image_scan()).array[0],
                                  plane)


# ----- 11. label files open with the format they claim only ----------------------------------
@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "EPS"])
def test_a_png_label_file_in_another_format_is_refused(tmp_path, fmt) -> None:
    path = tmp_path / "mask.png"
    if fmt == "EPS":
        path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 6\nshowpage\n")
    else:
        Image.fromarray(np.ones((6, 8), np.uint8)).save(path, format=fmt)
    with pytest.raises(ExportError, match="not a readable PNG"):
        import_labels(path, _image_scan())


def test_a_nifti_named_label_file_is_read_as_nifti_only(tmp_path) -> None:
    from pydicom.data import get_testdata_file

    path = tmp_path / "labels.nii"
    path.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    with pytest.raises(ExportError, match="not a readable NIfTI"):
        import_labels(path, _scan())


def test_a_damaged_sidecar_never_breaks_the_import(tmp_path) -> None:
    arr, ls = _labels()
    out = export_labels(tmp_path / "seg.nii.gz", arr, _scan(), ls)
    for text in ("[]", '{"labels": [{"value": "x"}]}', '{"labels_present": {"a": 1}}', "\xff"):
        sidecar_path(out).write_text(text, encoding="latin-1")
        back = import_labels(out, _scan())
        np.testing.assert_array_equal(back.array, arr)
