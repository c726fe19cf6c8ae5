"""The light install's headless paths, run by tests/test_light_install.py with PyTorch refused.

    PYTHONPATH=tests/no_torch:. MEDPLIB_LITE_MODELS=FOLDER python tests/light_paths.py OUT

Loads a real CT, segments boxes with LiteMedSAM from the model files, edits (accept, brush,
undo/redo), exports NIfTI and DICOM SEG, saves and reopens a project, runs a two-worker batch
and imports the PACS and engine-server clients; writes ``OUT/masks.npz`` and
``OUT/report.json``. Exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BOXES = ((30, 30, 100, 100), (50, 40, 80, 75), (5, 5, 122, 122))


def main(out: Path) -> int:
    from pydicom.data import get_testdata_file

    import medplib_core
    from medplib_core.display import apply_window
    from medplib_core.engines.base import Prompt
    from medplib_core.engines.registry import create_engine
    from medplib_core.export import export_labels, import_labels
    from medplib_core.project import load_project
    from medplib_core.session import AnnotationSession

    try:
        import torch  # noqa: F401
        raise AssertionError("torch imported: run with tests/no_torch first on PYTHONPATH")
    except ImportError:
        pass
    out.mkdir(parents=True, exist_ok=True)
    path = get_testdata_file("CT_small.dcm")
    vol = medplib_core.load(path)
    engine = create_engine({"name": "litemedsam"})
    assert "model files" in engine.info.device, engine.info.device
    image = apply_window(vol.array[0], *vol.window)
    enc = engine.encode(image)
    masks = {f"box{i}": enc.predict(Prompt(box=b)).mask for i, b in enumerate(BOXES)}
    click = enc.predict(Prompt(points=[(64.0, 64.0)], point_labels=[1]))
    refined = enc.predict(Prompt(points=[(40.0, 40.0)], point_labels=[0], mask_input=masks["box0"]))
    np.savez_compressed(out / "masks.npz", **masks)

    session = AnnotationSession()
    session.open(vol, path)
    session.segment(engine, Prompt(box=BOXES[0]), index=0)
    session.accept()
    brush = np.zeros(vol.shape[1:], bool)
    brush[5:12, 5:12] = True
    session.paint(brush, "axial", 0)
    painted = int((session.labelmap.array > 0).sum())
    assert session.undo() and session.redo() and int((session.labelmap.array > 0).sum()) == painted
    labels = session.labelmap.array
    export_labels(out / "labels.nii.gz", labels, vol, session.labels)
    export_labels(out / "labels.dcm", labels, vol, session.labels)
    back = import_labels(out / "labels.dcm", vol).array
    assert np.array_equal(back > 0, labels > 0), "DICOM SEG round trip changed the labels"
    session.save(out / "case.medplib")
    project = load_project(out / "case.medplib")

    from medplib_core.batch import run_batch

    cases = out / "cases"
    cases.mkdir(exist_ok=True)
    for i in range(2):
        (cases / f"ct{i}.dcm").write_bytes(Path(path).read_bytes())
    (out / "prompts.csv").write_text("case,label,type,space,slice,x0,y0,z0,x1,y1,z1\n"
                                     + "".join(f"ct{i},organ,box,pixel,0,30,30,,100,100,\n" for i in range(2)))
    summary = run_batch({"output": str(out / "run"), "engine": {"name": "litemedsam"},
                         "cases": [{"folder": str(cases), "pattern": "*.dcm"}], "prompts": str(out / "prompts.csv")},
                        workers=2)
    assert summary["ok"] == 2 and summary["workers"] == 2, summary

    import medplib_core.engines.remote  # noqa: F401  (the engine-server client)
    import medplib_core.pacs  # noqa: F401

    heavy = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "transformers"))
    report = {"device": engine.info.device, "painted": painted, "click_pixels": int(click.mask.sum()),
              "refined_pixels": int(refined.mask.sum()), "project_prompts": len(project.prompts),
              "batch": summary, "heavy_modules": heavy}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    engine.close()
    return 0 if not heavy else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
