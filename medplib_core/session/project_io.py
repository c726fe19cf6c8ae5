"""A session written to a project (`medplib_core.project.Project`) and read back into one.

The project format itself (folders, generations, atomic commit) is `medplib_core.project.format`;
this module only maps a session onto it: scan reference, labels and voxels, prompt records,
the chat transcript and the view state (with the active label and window). The project folder
the session is saved to goes into ``meta["project_folder"]``, so an autosave snapshot restored
after a crash still knows which project its work belongs to. Measurements go into
``meta["measurements"]`` (their `to_dict`s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..annotation import LabelSet
from ..project import Project, project_folder, save_project, scan_reference
from .save_state import SaveTarget


def to_project(session, copy: bool = True) -> Project:
    """A snapshot for saving (the label array copied unless ``copy=False``)."""
    if session.volume is None:
        raise RuntimeError("the session has no scan to save")
    arr = session.labelmap.array.copy() if copy else session.labelmap.array
    if session.view_state_provider is not None:
        session.view_state.update(session.view_state_provider())
    view = dict(session.view_state, active_label=session.active_value, window=list(session.window))
    folder = session.save_state.location(SaveTarget.PROJECT)
    meta = {"project_folder": folder} if folder else {}
    if len(session.measurements):
        meta["measurements"] = session.measurements.to_list()
    return Project(scan=scan_reference(session.volume, session.path, session.series),
                   labels=LabelSet.from_list(session.labels.to_list()), label_array=arr,
                   prompts=list(session.prompts), chat=session.chat.to_json(), view=view,
                   meta=meta)


def project_job(session, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(project, *args)`` wrapped for a worker: the labels are copied there, under the
    session's lock (NumPy copies without the GIL), so the caller never waits for a large copy."""
    project = to_project(session, copy=False)
    src, lock = session.labelmap.array, session.lock

    def job(*args, **kwargs):
        with lock:
            project.label_array = src.copy()
        return fn(project, *args, **kwargs)

    return job


def load_into(session, volume, project: Project, folder: str | Path | None = None) -> None:
    """Open ``volume`` in ``session`` with the project's labels, prompts, chat and view state.

    ``folder``: the project folder it was read from (the project target then holds this state);
    without one (a recovered autosave) the session belongs to the project named in its meta,
    with changes that project does not have yet."""
    if tuple(project.label_array.shape) != tuple(volume.shape):
        raise ValueError(f"the project's labels {tuple(project.label_array.shape)} do not fit "
                         f"the scan {tuple(volume.shape)}")
    session.open(volume, project.scan.get("path", ""), project.scan.get("series"),
                 labels=project.labels, label_array=project.label_array)
    session.restore_records(project.prompts)
    session.view_state = dict(project.view)
    session.chat.load(project.chat)
    session.measurements.load(project.meta.get("measurements", []))
    if project.view.get("window"):
        session.set_window(*project.view["window"])
    if project.view.get("active_label") in session.labels:
        session.set_active(int(project.view["active_label"]))
    if folder is not None:
        session.save_state.saved(SaveTarget.PROJECT, location=str(project_folder(folder)))
    else:
        session.save_state.locate(SaveTarget.PROJECT, project.meta.get("project_folder"))
    session.events.view_state.emit(session.view_state)


def save(session, folder: str | Path) -> Path:
    """Save ``session`` as a project folder (or the folder of the project.json named); the
    project target is then clean and located there."""
    folder = project_folder(folder)
    mark = session.save_state.mark()
    project = to_project(session)
    project.meta["project_folder"] = str(folder)
    path = save_project(folder, project)
    session.save_state.saved(SaveTarget.PROJECT, mark, location=str(folder))
    return path
