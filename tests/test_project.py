"""Project files and the autosave/recovery store (no Qt)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medplib_core.annotation import LabelSet, OverlapPolicy
from medplib_core.project import (Project, ProjectError, PromptRecord, RecoveryStore, is_project,
                                  load_project, save_project)


def make_project() -> Project:
    labels = LabelSet()
    labels.add("liver", color=(10, 20, 30), policy=OverlapPolicy.MERGE)
    labels.add("lesion", locked=True)
    arr = np.zeros((4, 20, 30), np.uint16)
    arr[1, 5:10, 5:15] = 1
    arr[2, 2:4, 3:4] = 2
    m2 = np.zeros((20, 30), bool)
    m2[5:10, 5:15] = True
    m3 = np.zeros((4, 20, 30), bool)
    m3[1:3, 6:8, 6:9] = True
    prompts = [
        PromptRecord(1, "box", "axial", 1, {"box": [5, 5, 14, 9]}, {"engine": "LiteMedSAM"}, m2, "accepted", 1),
        PromptRecord(2, "propagate", "axial", 1, {"seed": "label liver"}, {"engine": "x"}, m3, "discarded"),
        PromptRecord(3, "click", "coronal", 0, {"points": [[1, 2]]}, {}, None, "proposed"),
    ]
    return Project(scan={"path": "/x/ct.nii.gz", "series": None, "shape_kji": [4, 20, 30]}, labels=labels,
                   label_array=arr, prompts=prompts, chat=[{"role": "user", "text": "hi"}],
                   view={"active_label": 2, "window": [40, 400]})


def test_round_trip(tmp_path):
    p = make_project()
    folder = tmp_path / "case.medplib"
    save_project(folder, p)
    assert is_project(folder) and is_project(folder / "project.json")
    q = load_project(folder / "project.json")
    assert np.array_equal(q.label_array, p.label_array) and q.label_array.dtype == np.uint16
    assert [lab.to_dict() for lab in q.labels] == [lab.to_dict() for lab in p.labels]
    assert q.labels[1].policy is OverlapPolicy.MERGE and q.labels[2].locked
    for a, b in zip(p.prompts, q.prompts):
        assert (a.id, a.kind, a.status, a.prompt, a.label_value) == (b.id, b.kind, b.status, b.prompt, b.label_value)
        assert (a.mask is None and b.mask is None) or np.array_equal(a.mask, b.mask)
    assert q.chat == p.chat and q.view["window"] == [40, 400] and q.scan["path"] == "/x/ct.nii.gz"


def test_save_replaces_generations_atomically(tmp_path):
    p = make_project()
    folder = tmp_path / "case.medplib"
    save_project(folder, p)
    p.label_array[0, 0, 0] = 2
    save_project(folder, p)
    doc = json.loads((folder / "project.json").read_text())
    assert doc["generation"] == 2
    assert sorted(x.name for x in folder.iterdir()) == ["labels-000002.npz", "project.json", "prompts-000002.npz"]
    assert load_project(folder).label_array[0, 0, 0] == 2


def test_bad_projects_raise_project_error(tmp_path):
    with pytest.raises(ProjectError, match="not a MedPLIB Studio project"):
        load_project(tmp_path)
    (tmp_path / "project.json").write_text("{broken")
    with pytest.raises(ProjectError, match="unreadable"):
        load_project(tmp_path)
    folder = tmp_path / "p.medplib"
    save_project(folder, make_project())
    for f in folder.glob("labels-*.npz"):
        f.unlink()
    with pytest.raises(ProjectError, match="missing or damaged"):
        load_project(folder)


def test_recovery_store_finds_sessions_of_dead_processes(tmp_path):
    store = RecoveryStore(tmp_path / "rec")
    mine = store.start_session()
    mine.save(make_project(), edits=3)
    assert store.orphans() == []  # this process is alive
    # a session written by a process that then died (its pid is gone)
    code = "\n".join([
        "import numpy as np",
        "from medplib_core.annotation import LabelSet",
        "from medplib_core.project import Project, RecoveryStore",
        f"s = RecoveryStore({str(tmp_path / 'rec')!r}).start_session()",
        "ls = LabelSet(); ls.add('spleen')",
        "a = np.zeros((2, 3, 4), np.uint16); a[1, 1, 1] = 1",
        "s.save(Project(scan={'path': '/scan.dcm'}, labels=ls, label_array=a), edits=1)",
    ])
    subprocess.run([sys.executable, "-c", code], check=True)
    orphans = store.orphans()
    assert len(orphans) == 1 and orphans[0].scan_path == "/scan.dcm"
    assert "scan.dcm" in orphans[0].describe()
    restored = store.load(orphans[0])
    assert restored.labels[1].name == "spleen" and restored.label_array[1, 1, 1] == 1
    store.discard(orphans[0])
    assert store.orphans() == []
    mine.close()
    assert not mine.folder.exists()


def test_orphan_without_snapshot_is_cleaned(tmp_path):
    store = RecoveryStore(tmp_path)
    s = store.start_session()
    info = json.loads((s.folder / "session.json").read_text())
    info["pid"] = 2**22 + 12345  # no such process
    (s.folder / "session.json").write_text(json.dumps(info))
    assert store.orphans() == [] and not s.folder.exists()


def test_closed_session_with_unsaved_work_is_offered(tmp_path):
    store = RecoveryStore(tmp_path)
    s = store.start_session()
    s.save(make_project(), edits=2)
    assert store.orphans() == []
    s.mark_closed()
    (o,) = store.orphans()
    assert not o.crashed and o.info["edits"] == 2
