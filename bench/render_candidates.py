"""Which library should draw the 3D label view? Import time, start-up, frame time, install size.

Candidates (each measured in fresh subprocesses, on the X display given or a private Xvfb,
with whatever OpenGL the machine has; here Mesa's llvmpipe software renderer):

* ``pyqtgraph``: ``pyqtgraph.opengl.GLViewWidget`` + ``GLMeshItem`` (needs PyOpenGL);
* ``vtk``: ``QVTKRenderWindowInteractor`` (VTK's own Qt widget) with a ``vtkPolyData`` actor.

(PySide6's bare ``QOpenGLWidget`` with our own shaders, nothing to install, was tried too: its
``QOpenGLFunctions.glDrawElements`` binding crashed the process in PySide6 6.11, so it is not
a candidate; pyqtgraph draws through the same ``QOpenGLWidget`` with PyOpenGL calls.)

The mesh is every label surface of the shared CT series (``medplib_core.analysis.surface``,
about 330k triangles), computed once by the parent. Per run: ``import_s`` (the library's
import), ``startup_s`` (QApplication exists -> widget shown with the mesh -> first frame done),
``frame_ms`` (median of 40 frames, the camera turning, each finished with glFinish / a pixel
read-back). ``headless``: whether it also renders with ``QT_QPA_PLATFORM=offscreen``.
Installed size: the files pip recorded for the candidate and the packages it adds.

    python bench/render_candidates.py [--runs 3] [--path EXTRA_SITE_DIR ...]

``--path`` adds folders where candidates were installed apart (``pip install --target``), so
measuring never changes the project's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CANDIDATES = ("pyqtgraph", "vtk")
PACKAGES = {"pyqtgraph": ["pyqtgraph", "PyOpenGL", "colorama"], "vtk": ["vtk"]}

CHILD = r'''
import json, statistics, sys, time
import numpy as np
name, mesh_path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if name == "pyqtgraph":
    import pyqtgraph.opengl as gl
    from OpenGL import GL
elif name == "vtk":
    import vtk
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
import_s = time.perf_counter() - t0
from PySide6.QtWidgets import QApplication
app = QApplication.instance() or QApplication(["bench"])
data = np.load(mesh_path)
verts, faces, normals, colors = data["verts"], data["faces"], data["normals"], data["colors"]
centre = verts.mean(0)
t1 = time.perf_counter()
if name == "pyqtgraph":
    w = gl.GLViewWidget()
    w.resize(800, 600)
    item = gl.GLMeshItem(vertexes=verts - centre, faces=faces, vertexColors=colors, smooth=True,
                         shader="shaded", glOptions="opaque")
    w.addItem(item)
    w.setCameraPosition(distance=float(np.ptp(verts, 0).max() * 1.6))
    w.show()
    def frame(a):
        w.setCameraPosition(azimuth=a)
        w.makeCurrent(); w.paintGL(); GL.glFinish(); w.doneCurrent()
elif name == "vtk":
    w = QVTKRenderWindowInteractor()
    w.resize(800, 600)
    pts = vtk.vtkPoints(); pts.SetData(numpy_to_vtk(np.ascontiguousarray(verts - centre), deep=True))
    cells = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64).ravel()
    ca = vtk.vtkCellArray(); ca.SetCells(len(faces), numpy_to_vtkIdTypeArray(cells, deep=True))
    poly = vtk.vtkPolyData(); poly.SetPoints(pts); poly.SetPolys(ca)
    poly.GetPointData().SetNormals(numpy_to_vtk(np.ascontiguousarray(normals), deep=True))
    rgb = numpy_to_vtk((colors[:, :3] * 255).astype(np.uint8), deep=True); rgb.SetName("rgb")
    poly.GetPointData().SetScalars(rgb)
    mapper = vtk.vtkPolyDataMapper(); mapper.SetInputData(poly); mapper.SetColorModeToDirectScalars()
    actor = vtk.vtkActor(); actor.SetMapper(mapper)
    ren = vtk.vtkRenderer(); ren.AddActor(actor); ren.ResetCamera()
    rw = w.GetRenderWindow(); rw.AddRenderer(ren)
    w.show(); w.Initialize()
    cam = ren.GetActiveCamera()
    def frame(a):
        cam.Azimuth(3); rw.Render(); rw.WaitForCompletion()
for _ in range(50):
    app.processEvents()
frame(0.0)
startup_s = time.perf_counter() - t1
times = []
for n in range(40):
    t = time.perf_counter(); frame(3.0 * (n + 1)); times.append(time.perf_counter() - t)
if len(sys.argv) > 3:
    if name == "vtk":
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter
        from vtkmodules.vtkIOImage import vtkPNGWriter
        f = vtkWindowToImageFilter(); f.SetInput(rw); f.ReadFrontBufferOff(); f.Update()
        wr = vtkPNGWriter(); wr.SetFileName(sys.argv[3]); wr.SetInputConnection(f.GetOutputPort()); wr.Write()
    else:
        w.grabFramebuffer().save(sys.argv[3])
renderer = ""
if name == "vtk":
    renderer = rw.ReportCapabilities().split("OpenGL renderer string:")[-1].splitlines()[0].strip()
elif name == "pyqtgraph":
    w.makeCurrent(); renderer = GL.glGetString(GL.GL_RENDERER).decode(); w.doneCurrent()
print("RESULT " + json.dumps({"import_s": import_s, "startup_s": startup_s,
                              "frame_ms": 1000 * statistics.median(times),
                              "renderer": renderer, "triangles": int(len(faces))}), flush=True)
'''


def make_mesh(path: Path) -> int:
    import numpy as np

    from medplib_core import load
    from medplib_core.analysis.surface import label_surfaces
    from medplib_core.export import import_labels

    data = REPO.parent / "shared" / "data" / "volumes"
    vol = load(data / "ct_series_j2k")
    imp = import_labels(data / "ct_series_j2k_labels.nii.gz", vol)
    surfaces = label_surfaces(vol, imp.array, imp.labels)
    verts, faces, normals, colors, base = [], [], [], [], 0
    for s in surfaces:
        verts.append(s.vertices); normals.append(s.normals); faces.append(s.faces + base)
        colors.append(np.tile(np.r_[np.array(s.color) / 255.0, 1.0], (len(s.vertices), 1)))
        base += len(s.vertices)
    np.savez(path, verts=np.concatenate(verts).astype(np.float32), faces=np.concatenate(faces),
             normals=np.concatenate(normals).astype(np.float32),
             colors=np.concatenate(colors).astype(np.float32))
    return int(sum(len(f) for f in faces))


def installed_mb(names: list[str], paths: list[str]) -> float | None:
    from importlib import metadata

    total = 0
    for name in names:
        try:
            dist = next(d for d in metadata.distributions(path=paths + sys.path)
                        if d.metadata["Name"].lower() == name.lower())
        except StopIteration:
            return None
        total += sum((Path(dist.locate_file(f)).stat().st_size for f in dist.files or []
                      if Path(dist.locate_file(f)).is_file()), 0)
    return total / 2**20


def run_child(name: str, mesh: Path, env: dict, shot: Path | None = None) -> dict | None:
    args = [sys.executable, "-c", CHILD, name, str(mesh)] + ([str(shot)] if shot else [])
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(f"[{name}] failed:\n{res.stderr[-1500:]}\n")
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--path", action="append", default=[])
    ap.add_argument("--display", help="an X display to use instead of a private Xvfb")
    ap.add_argument("--shots", help="folder for one screenshot per candidate")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="render-bench-"))
    mesh = tmp / "mesh.npz"
    n_tri = make_mesh(mesh)
    xvfb = None
    display = args.display
    if display is None:
        display = ":97"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
    base_env = dict(os.environ, PYTHONPATH=os.pathsep.join(args.path + [str(REPO)]))
    rows = []
    try:
        for name in CANDIDATES:
            runs = []
            for n in range(args.runs):
                shot = Path(args.shots) / f"{name}.png" if args.shots and n == 0 else None
                r = run_child(name, mesh, dict(base_env, DISPLAY=display, QT_QPA_PLATFORM="xcb"), shot)
                if r:
                    runs.append(r)
            offscreen = run_child(name, mesh, dict(base_env, QT_QPA_PLATFORM="offscreen"))
            size = installed_mb(PACKAGES[name], args.path)
            if not runs:
                rows.append((name, size, None, None, None, bool(offscreen), ""))
                continue
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rows.append((name, size, med("import_s"), med("startup_s"), med("frame_ms"),
                         bool(offscreen), runs[0]["renderer"]))
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    print(f"\n{n_tri} triangles, 800x600, {args.runs} runs each (medians); busy shared machine\n")
    print("| candidate | extra install MB | import s | start-up s | frame ms | offscreen platform | renderer |")
    print("|---|---|---|---|---|---|---|")
    fmt = lambda v, d: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    for name, size, imp, start, frame, off, renderer in rows:
        print(f"| {name} | {fmt(size, 1)} | {fmt(imp, 3)} | {fmt(start, 3)} | {fmt(frame, 1)} | "
              f"{'yes' if off else 'no'} | {renderer} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
