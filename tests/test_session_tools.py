"""The analysis tools inside the annotation session, headless: measurements as undo steps, kept in
the project and the export sidecar; brush stamps (mm, 3D ball, value range) as edits; fill
between slices as a 3D proposal that accepts into the label and undoes as one step."""

from __future__ import annotations

import json

import numpy as np
import pytest

import medplib_core
from medplib_core.analysis.brush import brush_2d, brush_balls
from medplib_core.analysis.interpolate import fill_between_slices
from medplib_core.analysis.measure import Roi, Ruler, measurements_from_sidecar
from medplib_core.annotation import PromptKind, PromptStatus
from medplib_core.export import export_labels
from medplib_core.project import load_project
from medplib_core.session import AnnotationSession
from medplib_core.slicing import slice_geometry
from session_fixtures import ct, session  # noqa: F401 (fixtures)


def test_measurements_are_undo_steps_with_events(session):
    heard = []
    session.events.measurements.connect(lambda: heard.append(len(session.measurements)))
    ruler = session.measurements.add(Ruler("axial", 6, (10.0, 10.0), (10.0, 70.0)))
    roi = session.measurements.add(Roi("ellipse", "coronal", 40, (2.0, 20.0), (8.0, 60.0)))
    assert [m.name for m in session.measurements] == ["ruler 1", "ROI 1"]
    assert session.history.undo_text() == "add ellipse"
    moved = session.measurements.replace(ruler, Ruler("axial", 6, (10.0, 10.0), (40.0, 50.0)))
    assert moved.name == "ruler 1" and session.measurements[0] is moved
    session.measurements.remove(roi)
    assert len(session.measurements) == 1 and heard[-1] == 1
    assert session.undo()  # the ROI is back, equal to what was drawn
    assert [m.to_dict() for m in session.measurements][1] == roi.to_dict()
    assert session.undo()  # the ruler's old end
    assert session.measurements[0].end == (10.0, 70.0)
    assert session.undo() and session.undo() and len(session.measurements) == 0
    assert not session.history.can_undo
    assert session.redo() and session.redo() and session.redo()
    assert session.measurements[0].end == (40.0, 50.0) and len(session.measurements) == 2
    # a voxel edit in between: one history for both
    square = np.zeros(slice_geometry(session.volume, "axial", 6).shape, bool)
    square[:20, :20] = True
    session.paint(square, "axial", 6)
    session.measurements.clear()
    assert session.undo() and len(session.measurements) == 2 and session.counts
    assert session.undo() and not session.counts and len(session.measurements) == 2
    # another scan forgets them
    session.open(session.volume, session.path)
    assert len(session.measurements) == 0 and heard[-1] == 0


def test_measurements_in_the_project_and_the_sidecar(session, ct, tmp_path):
    vol = ct[1]
    ruler = session.measurements.add(Ruler("axial", 6, (10.0, 10.0), (10.0, 70.0)))
    roi = session.measurements.add(Roi("rectangle", "axial", 6, (20.0, 20.0), (40.0, 50.0)))
    folder = session.save(tmp_path / "m.medplib")
    raw = json.loads((tmp_path / "m.medplib" / "project.json").read_text())
    assert raw["meta"]["measurements"] == [ruler.to_dict(), roi.to_dict()]
    back = AnnotationSession()
    back.load_project(vol, load_project(folder))
    assert [m.to_dict() for m in back.measurements] == [ruler.to_dict(), roi.to_dict()]
    assert not back.history.can_undo  # loading is no step
    # the export sidecar: geometry and measured values, read back by the core
    square = np.zeros(slice_geometry(vol, "axial", 6).shape, bool)
    square[:5, :5] = True
    session.paint(square, "axial", 6)
    extra = session.export_extra()
    out = export_labels(tmp_path / "l.nii.gz", session.labelmap.array, vol, session.labels, extra)
    side = json.loads(medplib_core.export.sidecar_path(out).read_text())
    length = side["measurements"][0]["length"]
    assert length == pytest.approx(60 * vol.spacing[0], rel=1e-6) and side["measurements"][0]["unit"] == "mm"
    block = slice_geometry(vol, "axial", 6).take(vol.array)[20:41, 20:51].astype(float)
    assert side["measurements"][1]["mean"] == pytest.approx(block.mean(), abs=1e-3)
    assert side["measurements"][1]["units"] == vol.units
    assert [m.to_dict() for m in measurements_from_sidecar(out)] == [ruler.to_dict(), roi.to_dict()]
    # a damaged entry in a project is left out, the others load
    raw["meta"]["measurements"].append({"kind": "protractor"})
    (tmp_path / "m.medplib" / "project.json").write_text(json.dumps(raw))
    again = AnnotationSession()
    again.load_project(vol, load_project(folder))
    assert len(again.measurements) == 2


def test_brush_stamps_paint_as_undoable_edits(session, ct):
    vol = ct[1]
    g = slice_geometry(vol, "axial", 6)
    lo, hi = np.percentile(g.take(vol.array), [40, 90])
    stamp = brush_2d(vol, "axial", 6, [(60, 40), (60, 90)], 6.0, value_range=(lo, hi))
    edit = session.paint_stamp(stamp)
    painted = session.labelmap.array == 1
    assert edit is not None and painted.sum() == stamp.mask.sum() == session.counts[1]
    values = vol.array[painted]
    assert values.min() >= lo and values.max() <= hi
    ball = brush_balls(vol, [vol.index_to_world([64, 64, 6])], 5.0)
    session.paint_stamp(ball, erase=True)
    assert session.history.undo_text() == "eraser"
    assert session.counts.get(1, 0) == painted.sum() - np.count_nonzero(ball.view(painted.copy())[ball.mask])
    assert session.undo() and session.counts[1] == painted.sum()
    assert session.undo() and not session.labelmap.array.any()
    # a stroke mask from the canvas, limited to the range by the session
    plane = np.zeros(g.shape, bool)
    plane[30:90, 30:90] = True
    session.paint(plane, "axial", 6, value_range=(hi, lo))
    shown = g.take(vol.array)
    np.testing.assert_array_equal(g.take(session.labelmap.array) == 1, plane & (shown >= lo) & (shown <= hi))


def test_fill_between_slices_is_a_proposal_accepted_into_the_label(session, ct):
    vol = ct[1]
    g_shape = slice_geometry(vol, "axial", 0).shape
    for k, r in ((2, 10), (8, 16)):  # discs on two slices, not neighbours
        yy, xx = np.ogrid[:g_shape[0], :g_shape[1]]
        session.paint((yy - 60) ** 2 + (xx - 60) ** 2 <= r * r, "axial", k)
    drawn = session.labelmap.array.copy()
    fill = fill_between_slices(drawn == 1, vol, "axial")
    prop = session.propose_fill(fill, "axial", 1)
    assert prop is not None and prop.is_3d and prop.record.kind is PromptKind.INTERPOLATE
    assert prop.record.provenance["drawn_slices"] == fill.drawn
    assert not (prop.record.mask & (drawn > 0)).any()  # only what it adds
    session.accept()
    assert prop.record.status is PromptStatus.ACCEPTED
    np.testing.assert_array_equal(session.labelmap.array == 1, fill.mask)
    assert session.labels[1].provenance[-1]["kind"] == "interpolate"
    assert session.undo()
    np.testing.assert_array_equal(session.labelmap.array, drawn)
    # drawn on neighbouring slices only: nothing to add, no proposal
    neighbours = session.labelmap.array == 1
    neighbours[3] = neighbours[2]
    neighbours[4:] = False
    assert session.propose_fill(fill_between_slices(neighbours, vol, "axial"), "axial", 1) is None
    assert session.proposal is None
