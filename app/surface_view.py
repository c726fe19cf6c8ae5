"""The 3D pane of the 2×2 layout: the label surfaces in world coordinates (LPS mm), rotatable.

Surfaces are the core's (`medplib_core.analysis.surface.label_surface`: marching cubes per label,
world vertices and outward normals, quadric decimation to a triangle budget), computed on a
worker from a copy of the labels, label by label (each appears when ready), cancelled when the
labels change again. After an edit only the labels whose voxel counts changed are meshed again.
Drawn with pyqtgraph.opengl (chosen by measurement, see the notes): left-drag rotates, wheel
zooms, middle-drag pans. Where OpenGL is unavailable (the offscreen Qt platform, no driver)
the pane says so instead; nothing else depends on it.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStackedWidget, QToolButton, QVBoxLayout, QWidget

from medplib_core.analysis.surface import label_surface
from medplib_core.errors import CancelledError, MedplibError

from .workers import TaskRunner

TRIANGLE_BUDGET = 300_000  # all labels together (frame time on a software renderer)
SMOOTHING = 1.0  # Gaussian sigma in voxels before marching cubes: no terraces, volume within ~3 %
NO_GL_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb")


def load_triton_before_gl() -> None:
    """Load Triton's native library (if installed) before the first OpenGL context.

    Mesa's software renderer (llvmpipe) and Triton both carry LLVM; once llvmpipe is loaded,
    loading ``libtriton`` (which ``import torchvision`` reaches through ``torch._dynamo``) crashes
    the process with a segmentation fault. In the other order both work (~0.3 s, once).
    """
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is not None:
            import triton._C.libtriton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken Triton only means torch cannot use it either
        pass


def gl_unavailable_reason() -> str | None:
    """Why the 3D pane cannot draw here, or None when OpenGL is there."""
    if os.environ.get("MEDPLIB_STUDIO_NO_GL") == "1":
        return "3D view turned off (MEDPLIB_STUDIO_NO_GL=1)."
    platform = QGuiApplication.platformName()
    if platform in NO_GL_PLATFORMS:
        return f"No 3D view on the '{platform}' display platform (OpenGL is not available there)."
    try:
        import OpenGL  # noqa: F401
        import pyqtgraph.opengl  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no 3D pane
        return f"No 3D view: pyqtgraph.opengl / PyOpenGL cannot be imported ({exc})."
    from PySide6.QtGui import QOffscreenSurface, QOpenGLContext

    load_triton_before_gl()
    ctx = QOpenGLContext()
    if not ctx.create():
        return "No 3D view: this display has no OpenGL."
    surface = QOffscreenSurface()
    surface.create()
    ok = ctx.makeCurrent(surface)
    ctx.doneCurrent()
    return None if ok else "No 3D view: an OpenGL context could not be made current."


def gl_view_window():
    """pyqtgraph's 3D view as a native OpenGL window (`QOpenGLWindow`), which the pane shows in
    a window container. The render-to-texture `GLViewWidget` would switch the whole main window
    to OpenGL composition: every repaint of any widget (a scrolled slice, a click's answer) then
    became a full-window GL frame, 12 ms each on a software renderer (Mesa llvmpipe: Xvfb, virtual
    machines, remote desktops), whether the 3D pane was shown or not."""
    from PySide6.QtCore import QRect
    from PySide6.QtOpenGL import QOpenGLWindow
    from pyqtgraph.opengl.GLViewWidget import GLViewMixin

    class GLViewWindow(GLViewMixin, QOpenGLWindow):
        def devicePixelRatioF(self) -> float:  # noqa: N802 (the mixin asks a widget's name)
            return float(self.devicePixelRatio())

        def rect(self) -> QRect:  # as a widget says it
            return QRect(0, 0, self.width(), self.height())

    return GLViewWindow()


def headlight_shader():
    """A light at the viewer (eye space), a little above and left: front faces bright, the
    shape read from the shading (pyqtgraph's own "shaded" lights the surfaces from behind)."""
    from pyqtgraph.opengl import shaders

    known = shaders.ShaderProgram.names.get("medplib_headlight")
    if known is not None:
        return known
    return shaders.ShaderProgram("medplib_headlight", [
        shaders.VertexShader("""
            uniform mat4 u_mvp;
            uniform mat3 u_normal;
            attribute vec4 a_position;
            attribute vec3 a_normal;
            attribute vec4 a_color;
            varying vec4 v_color;
            varying vec3 v_normal;
            void main() {
                v_normal = normalize(u_normal * a_normal);
                v_color = a_color;
                gl_Position = u_mvp * a_position;
            }
        """),
        shaders.FragmentShader("""
            #ifdef GL_ES
            precision mediump float;
            #endif
            varying vec4 v_color;
            varying vec3 v_normal;
            void main() {
                vec3 n = normalize(v_normal);
                vec3 light = normalize(vec3(-0.3, 0.4, 1.0));
                float diffuse = max(dot(n, light), 0.0);
                float spec = pow(max(dot(reflect(-light, n), vec3(0.0, 0.0, 1.0)), 0.0), 24.0);
                vec3 rgb = v_color.rgb * (0.28 + 0.72 * diffuse) + vec3(0.18) * spec;
                gl_FragColor = vec4(min(rgb, vec3(1.0)), v_color.a);
            }
        """),
    ])


class _Relay(QObject):
    """Carries surfaces from the worker to the GUI thread (queued)."""

    surface = Signal(int, object, int)  # label value, Surface or None (no voxels), job id
    bounds = Signal(object, object, int)  # world box (lo, hi) of all labelled voxels, job id


def labelled_world_box(volume, labels: np.ndarray):
    """The world box (LPS mm, lo and hi corners) of the voxels of ``labels`` ([k, j, i]) that are
    labelled, widened by half a voxel; None when nothing is."""
    spans = []
    for axis in (2, 1, 0):  # i, j, k
        hit = np.flatnonzero(np.any(labels != 0, axis=tuple(a for a in range(3) if a != axis)))
        if not hit.size:
            return None
        spans.append((hit[0] - 0.5, hit[-1] + 0.5))
    corners = np.array([[i, j, k] for i in spans[0] for j in spans[1] for k in spans[2]], dtype=float)
    world = volume.index_to_world(corners)
    return world.min(axis=0), world.max(axis=0)


class SurfaceView(QWidget):
    """The 3D pane: a GL view of the label surfaces, or a message where there is no OpenGL."""

    status_changed = Signal(str)

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.session = doc.session
        self.surfaces: dict[int, object] = {}  # label value -> Surface (core)
        self.items: dict[int, object] = {}  # label value -> GLMeshItem
        self._meshed: dict[int, int] = {}  # voxel counts the surfaces were made from
        self._job = 0
        self._task = None
        self._pending: set[int] | None = None  # labels to mesh when shown (None: all)
        self._framed = False  # the camera was pointed at the surfaces of this scan
        self.runner = TaskRunner(1, self, "surfaces")
        self.relay = _Relay(self)
        self.relay.surface.connect(self._arrived)
        self.relay.bounds.connect(self._bounds_known)
        self.stack = QStackedWidget()
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: palette(mid); padding: 12px;")
        self.stack.addWidget(self.message)
        self.status = QLabel("")
        self.status.setStyleSheet("color: palette(mid);")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.stack, 1)
        row = QHBoxLayout()
        row.setContentsMargins(2, 0, 2, 0)
        row.addWidget(self.status, 1)
        self.reset_button = QToolButton()
        self.reset_button.setText("Reset view")
        self.reset_button.setToolTip("Point the camera at the surfaces again, from the front, the head up")
        self.reset_button.setAutoRaise(True)
        self.reset_button.clicked.connect(lambda: self.frame())
        self.reset_button.setEnabled(False)
        row.addWidget(self.reset_button)
        lay.addLayout(row)
        self.gl = None
        self.reason = gl_unavailable_reason()
        if self.reason is None:
            try:
                self._make_gl()
            except Exception as exc:  # noqa: BLE001 - a broken GL stack must not stop the app
                self.reason = f"No 3D view: {exc}"
        self.message.setText(self.reason or "Label surfaces appear here once there are labels.")
        doc.volume_changed.connect(self._on_volume)
        doc.counts_changed.connect(self._on_counts)
        doc.labels_changed.connect(self._on_labels)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(300)
        self.timer.timeout.connect(self._start)

    def _make_gl(self) -> None:
        self.gl = gl_view_window()
        self.gl.setBackgroundColor((18, 18, 22))
        self.gl.setCameraPosition(distance=400, elevation=25, azimuth=-70)  # from the front (anterior), a little right and up
        self.gl_box = QWidget.createWindowContainer(self.gl, self)
        self.gl_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.stack.addWidget(self.gl_box)

    @property
    def available(self) -> bool:
        return self.gl is not None

    # ----- what to mesh ----------------------------------------------------------------------
    def _on_volume(self) -> None:
        self.cancel()
        for v in list(self.items):
            self._remove_item(v)
        self.surfaces.clear()
        self._meshed.clear()
        self._pending = None
        self._framed = False
        self._show_message_if_empty()
        self._schedule(None)

    def _on_counts(self) -> None:
        counts = self.session.counts
        changed = {v for v in set(counts) | set(self._meshed) if counts.get(v, 0) != self._meshed.get(v, 0)}
        if changed:
            self._schedule(changed)

    def _on_labels(self) -> None:
        """Colours and visibility apply at once; a label that was hidden may need a mesh."""
        for v, item in list(self.items.items()):
            lab = self.session.labels.get(v)
            if lab is None:
                self._remove_item(v)
                self.surfaces.pop(v, None)
                self._meshed.pop(v, None)
                continue
            item.setVisible(lab.visible)
            item.setColor(self._colour(lab.color))
        missing = {lab.value for lab in self.session.labels
                   if lab.visible and self.session.counts.get(lab.value) and lab.value not in self.surfaces}
        if missing:
            self._schedule(missing)

    def _schedule(self, values: set[int] | None) -> None:
        """Mesh ``values`` again (None: every label) as soon as the pane is shown."""
        if values is None:
            self._pending = None
        elif self._pending is not None:
            self._pending |= values
        if self.available and self.session.volume is not None and self.isVisible():
            if self._task is not None:
                self._task.cancel()  # the running job is stale: start again after it stops
            self.timer.start()

    def showEvent(self, ev) -> None:  # noqa: N802
        super().showEvent(ev)
        if self.available and self.session.volume is not None and (self._pending is None or self._pending):
            self.timer.start()

    def cancel(self) -> None:
        self.timer.stop()
        if self._task is not None:
            self._task.cancel()
        self._job += 1  # results of older jobs are dropped

    # ----- the worker ------------------------------------------------------------------------
    def _start(self) -> None:
        s = self.session
        if s.volume is None or not self.available:
            return
        if self._task is not None:  # wait for the cancelled one to stop
            self.timer.start()
            return
        counts = dict(s.counts)
        wanted = set(counts) if self._pending is None else set(self._pending)
        visible = {lab.value for lab in s.labels if lab.visible}
        gone = {v for v in self._meshed if v not in counts}  # their surfaces are removed
        todo = sorted(v for v in wanted | gone if v in visible or v not in counts)
        self._pending = set()
        if not todo:
            return
        self._job += 1
        job, vol, src, lock = self._job, s.volume, s.labelmap.array, s.lock
        colours = {lab.value: tuple(lab.color) for lab in s.labels}
        total = float(sum(counts.values())) or 1.0
        relay, framed = self.relay, self._framed

        def work(cancel):
            with lock:
                labels = src.copy()
            if not framed:  # the camera frames the whole scene before the first surface comes
                box = labelled_world_box(vol, labels)
                if box is not None:
                    relay.bounds.emit(box[0], box[1], job)
            failed = []  # one label that cannot be meshed does not take the others' surfaces
            for n, v in enumerate(todo):
                if cancel():
                    raise CancelledError("surfaces cancelled")
                budget = max(2_000, int(TRIANGLE_BUDGET * counts.get(v, 0) / total))
                try:
                    surf = label_surface(vol, labels, v, budget, SMOOTHING, colours.get(v)) if counts.get(v) else None
                except (ValueError, RuntimeError, MemoryError, MedplibError) as exc:
                    failed.append(f"label {v} ({exc})")
                    surf = None
                relay.surface.emit(v, surf, job)
            return failed

        self.status_changed.emit("Computing label surfaces…")
        self.status.setText(f"Computing surfaces of {len(todo)} label{'s' * (len(todo) != 1)}…")
        self._task = self.runner.submit(work, name="label surfaces", pass_cancel=True,
                                        on_done=lambda failed: self._ended(todo, counts, job, failed=failed),
                                        on_cancel=lambda: self._ended(todo, counts, job, cancelled=True),
                                        on_error=self._failed)

    def _ended(self, todo, counts, job, cancelled: bool = False, failed=()) -> None:
        self._task = None
        if not cancelled and job == self._job:
            for v in todo:
                self._meshed[v] = counts.get(v, 0)
        elif cancelled and self._pending is not None:
            self._pending |= set(todo)  # mesh them with the next job
        text = f"{len(self.items)} label surfaces · drag rotates, wheel zooms" if self.items else ""
        if failed:
            text = (text + " · " if text else "") + "no surface for " + ", ".join(failed)
        self.status.setText(text)
        self.status.setToolTip(text)
        if self._pending is None or self._pending:
            self.timer.start()

    def _failed(self, exc) -> None:
        self._task = None
        self.status.setText(f"Surfaces failed: {exc}")

    def _arrived(self, value: int, surf, job: int) -> None:
        if job != self._job:
            return
        self._remove_item(value)
        self.surfaces.pop(value, None)
        if surf is not None and len(surf.faces):
            self.surfaces[value] = surf
            self._add_item(value, surf)
        self._show_message_if_empty()

    # ----- drawing ---------------------------------------------------------------------------
    @staticmethod
    def _colour(rgb) -> tuple[float, float, float, float]:
        return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, 1.0)

    def _add_item(self, value: int, surf) -> None:
        import pyqtgraph.opengl as gl

        md = gl.MeshData(vertexes=surf.vertices, faces=surf.faces)
        md._vertexNormals = np.asarray(surf.normals, dtype=np.float32)  # the core's outward normals
        lab = self.session.labels.get(value)
        item = gl.GLMeshItem(meshdata=md, color=self._colour(lab.color if lab else surf.color),
                             shader=headlight_shader(), smooth=True, glOptions="opaque")
        item.setVisible(lab is None or lab.visible)
        self.gl.addItem(item)
        self.items[value] = item
        if not self._framed:  # no box came (cannot happen with voxels): frame what is there
            self.frame()

    def _remove_item(self, value: int) -> None:
        item = self.items.pop(value, None)
        if item is not None and self.gl is not None:
            self.gl.removeItem(item)

    def _bounds_known(self, lo, hi, job: int) -> None:
        if job == self._job and not self._framed:
            self.frame(lo, hi)

    def frame(self, lo=None, hi=None) -> None:
        """Point the camera at the world box lo..hi (default: the surfaces shown), from the
        front, the head up."""
        if self.gl is None:
            return
        if lo is None or hi is None:
            if not self.surfaces:
                return
            pts = np.concatenate([s.vertices for s in self.surfaces.values()])
            lo, hi = pts.min(axis=0), pts.max(axis=0)
        from PySide6.QtGui import QVector3D

        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        centre = (lo + hi) / 2
        self.gl.opts["center"] = QVector3D(*[float(c) for c in centre])
        # fill the view (60° field): the largest extent at about 1.1 times its size away
        self.gl.setCameraPosition(distance=float((hi - lo).max()) * 1.1 + 10, elevation=25, azimuth=-70)
        self._framed = True

    def _show_message_if_empty(self) -> None:
        if self.gl is None:
            self.stack.setCurrentWidget(self.message)
            return
        self.reset_button.setEnabled(bool(self.items))
        if self.items:
            self.stack.setCurrentWidget(self.gl_box)
        else:
            self.message.setText("Label surfaces appear here once there are labels.")
            self.stack.setCurrentWidget(self.message)

    def shutdown(self) -> None:
        self.cancel()
        self.runner.wait(30000)
