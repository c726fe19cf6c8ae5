"""`RemoteEngine`: a `SegmentationEngine` whose model runs in `medplib-studio serve`.

    engine = RemoteEngine("http://gpu-box:8765", engine="litemedsam")  # token: $MEDPLIB_SERVER_TOKEN
    session = engine.encode(slice_uint8)          # uploads the slice once (by content id)
    result = session.predict(Prompt(box=(10, 20, 80, 90)))
    chat = RemoteEngine(url, engine="medplib").encode(slice_uint8).chat()   # RemoteChatSession

Callers see the same interface as with a local engine. Slices are sent only when the server
lacks them; after a server restart (or expiry) the engine uploads again what a request needs.
Imports numpy and httpx only (no torch): a thin client.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

import numpy as np

from medplib_core.errors import MedplibError
from medplib_core.server import wire

from .base import Capability, EngineInfo, EngineSession, Prompt, SegmentationEngine, SegResult
from .remote_http import Connection, UnknownOnServer

POLL_S = 0.1


class RemoteEngine(SegmentationEngine):
    def __init__(self, url: str, engine: str = "litemedsam", token: str | None = None,
                 connection: Connection | None = None, mark_server: bool = True,
                 **connection_options: Any):
        """``mark_server``: name the server in `info` and in every provenance record (off for
        the application's own local engine process, whose results are the in-process ones)."""
        self.conn = connection or Connection(url, token, **connection_options)
        self.key = engine
        self.mark_server = mark_server
        served = {e["key"]: e for e in self.conn.info.get("engines", [])}
        if engine not in served:
            raise MedplibError(f"the engine server at {self.conn.url} serves "
                               f"{', '.join(served) or 'no engine'}, not {engine!r}")
        d = served[engine]
        device = f"{d['device']} at {self.conn.url}" if mark_server else d["device"]
        self._info = EngineInfo(d["name"], d["version"], d["weights"], d["weights_sha256"], device)
        known = {c.value for c in Capability}
        self.capabilities = frozenset(Capability(c) for c in d["capabilities"] if c in known)
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()
        # Like `MedplibEngine.model_lock`: callers that hold it make their calls one at a time
        # (the server schedules everyone's; this only orders this client's own threads).
        self.model_lock = threading.RLock()
        self._pre: _RemotePreencoder | None = None

    @property
    def info(self) -> EngineInfo:
        return self._info

    def _path(self, action: str) -> str:
        return f"/v1/engines/{self.key}/{action}"

    # ----- uploads --------------------------------------------------------------------------
    def upload(self, ident: str, image: np.ndarray, force: bool = False) -> None:
        """Make sure the server holds ``image`` (asks by id first; sends pixels only if needed)."""
        with self._lock:
            if ident in self._uploaded and not force:
                return
        try:
            if force:
                raise UnknownOnServer("image", "re-upload")
            self.conn.request("GET", f"/v1/images/{ident}")
        except UnknownOnServer:
            self.conn.request("POST", "/v1/images", wire.image_payload(image))
        with self._lock:
            self._uploaded.add(ident)

    def on_image(self, ident: str, image: np.ndarray, call: Callable[[], Any]) -> Any:
        """Run ``call`` (a request about ``image``); upload again and retry once if the server
        no longer holds the image (expired, evicted, or the server restarted)."""
        self.upload(ident, image)
        try:
            return call()
        except UnknownOnServer as exc:
            if exc.kind != "image":
                raise
            self.upload(ident, image, force=True)
            return call()

    # ----- the engine interface ---------------------------------------------------------------
    def encode(self, image: np.ndarray) -> "RemoteEngineSession":
        arr = wire.as_slice(image)
        ident = wire.image_id(arr)
        out = self.on_image(ident, arr, lambda: self.conn.request("POST", self._path("encode"), {"image": ident}))
        return RemoteEngineSession(self, ident, arr, tuple(out["image_shape"]))

    def is_cached(self, image: np.ndarray) -> bool | None:
        """Asked by status readouts on a GUI thread: never waits for a lost server (None) and
        never more than half a second for a live one."""
        if not self.conn.connected:
            return None
        arr = wire.as_slice(image)
        ident = wire.image_id(arr)
        with self._lock:
            if ident not in self._uploaded:
                return False
        try:
            return self.conn.request("GET", f"{self._path('cached')}/{ident}", timeout=0.5)["cached"]
        except UnknownOnServer:
            return False
        except MedplibError:
            return None

    def preencode(self, images: Iterable[np.ndarray | Callable[[], np.ndarray]]) -> None:
        if not self.supports(Capability.PREENCODE):
            return
        if self._pre is None:
            self._pre = _RemotePreencoder(self)
        self._pre.schedule(list(images))

    def cancel_preencode(self) -> None:
        if self._pre is not None:
            self._pre.schedule([])

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._pre is None or self._pre.wait(timeout)

    def close(self) -> None:
        if self._pre is not None:
            self._pre.stop()
            self._pre = None
        self.conn.close()

    # ----- 3D propagation on the server -------------------------------------------------------
    def upload_volume(self, volume, force: bool = False) -> str:
        """Make sure the server holds ``volume`` (voxels and geometry); returns its id."""
        ident = wire.volume_id(volume)
        try:
            if force:
                raise UnknownOnServer("volume", "re-upload")
            self.conn.request("GET", f"/v1/volumes/{ident}")
        except UnknownOnServer:
            self.conn.request("POST", "/v1/volumes", wire.volume_payload(volume))
        return ident

    def propagate_in_view(self, volume, orientation: str, index: int, seed2d: np.ndarray,
                          window: tuple[float, float] | None = None,
                          progress: Callable[[int, int], None] | None = None,
                          cancel: Callable[[], bool] | None = None, rules=None):
        """`engines.propagation.propagate_in_view`, run on the server (default stop rules);
        returns the same `PropagationResult`."""
        from medplib_core.errors import CancelledError

        from .propagation import PropagationResult

        if rules is not None:
            raise MedplibError("custom stop rules are not sent to a server; use the defaults")
        body = {"volume": self.upload_volume(volume), "orientation": orientation, "index": int(index),
                "seed": wire.mask_payload(seed2d), "window": list(window) if window else None}
        try:
            job = self.conn.request("POST", self._path("propagate"), body)
        except UnknownOnServer as exc:
            if exc.kind != "volume":
                raise
            self.upload_volume(volume, force=True)
            job = self.conn.request("POST", self._path("propagate"), body)
        path = f"/v1/jobs/{job['job']}"
        cancelled = False
        while job["state"] == "running":
            if cancel is not None and not cancelled and cancel():
                self.conn.request("DELETE", path)
                cancelled = True
            time.sleep(POLL_S)
            job = self.conn.request("GET", path)
            if progress is not None and job["total"]:
                progress(job["done"], job["total"])
        if job["state"] == "cancelled":
            raise CancelledError("propagation cancelled")
        if job["state"] == "failed":
            raise MedplibError(f"propagation failed on the server: {job['error']}")
        res = job["result"]
        mask = wire.mask_from_payload(res["mask"], "result.mask")
        return PropagationResult(mask, res["summary"], res["axis"], res["seed_index"])


class RemoteEngineSession(EngineSession):
    """An uploaded, encoded slice on the server."""

    def __init__(self, engine: RemoteEngine, ident: str, image: np.ndarray, shape: tuple[int, int]):
        self.engine, self.image_id, self.image = engine, ident, image
        self.image_shape = shape

    def predict(self, prompt: Prompt, cancel: Callable[[], bool] | None = None) -> SegResult:
        eng = self.engine
        body = {"image": self.image_id, "prompt": prompt_body(prompt)}
        out = eng.on_image(self.image_id, self.image,
                           lambda: eng.conn.request("POST", eng._path("predict"), body))
        mask = wire.mask_from_payload(out["mask"], "mask")
        prov = dict(out["provenance"], server=eng.conn.url) if eng.mark_server else out["provenance"]
        return SegResult(mask, float(out["score"]), prov, out.get("reason"))

    def chat(self, settings: Any = None):
        """A new conversation about this slice (`RemoteChatSession`, like `ChatSession`)."""
        from .remote_chat import RemoteChatSession

        return RemoteChatSession(self.engine, self.image_id, self.image, settings)


def prompt_body(prompt: Prompt) -> dict[str, Any]:
    """A `Prompt` as the server's ``PromptBody``."""
    body: dict[str, Any] = {
        "points": [[float(x), float(y)] for x, y in prompt.points],
        "point_labels": [int(v) for v in prompt.point_labels],
    }
    if prompt.box is not None:
        body["box"] = [float(v) for v in prompt.box]
    if prompt.polygon is not None:
        body["polygon"] = [[float(x), float(y)] for x, y in prompt.polygon]
    if prompt.region is not None:
        body["region"] = wire.mask_payload(prompt.region)
    if prompt.mask_input is not None:
        body["mask_input"] = wire.mask_payload(prompt.mask_input)
    if prompt.text is not None:
        body["text"] = prompt.text
    return body


class _RemotePreencoder:
    """Uploads the slices to pre-encode on a background thread, then queues them remotely."""

    def __init__(self, engine: RemoteEngine):
        self.engine = engine
        self._cond = threading.Condition()
        self._todo: list | None = None
        self._busy = False
        self._ids: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="remote-preencode", daemon=True)
        self._thread.start()

    def schedule(self, items: list) -> None:
        with self._cond:
            self._todo = items
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._todo is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                items, self._todo, self._busy = self._todo, None, True
            try:
                ids = []
                for it in items:
                    with self._cond:
                        if self._todo is not None or self._stop:
                            break  # replaced by a newer list
                    arr = wire.as_slice(it() if callable(it) else it)
                    ident = wire.image_id(arr)
                    self.engine.upload(ident, arr)
                    ids.append(ident)
                self.engine.conn.request("POST", self.engine._path("preencode"), {"images": ids})
                self._ids = ids
            except MedplibError:
                pass  # background work: the next prompt reports a real problem
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy or self._todo is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        eng = self.engine
        for ident in list(self._ids):
            while True:
                try:
                    if eng.conn.request("GET", f"{eng._path('cached')}/{ident}")["cached"] is not False:
                        break
                except (UnknownOnServer, MedplibError):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
