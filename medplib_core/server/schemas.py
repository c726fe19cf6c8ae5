"""Request and response bodies of the engine API (pydantic; they make /openapi.json).

The nouns are those of `engines.base` (image, prompt, mask, score, provenance) and
`medplib.chat` (conversation, question, regions, turn). Numbers are bounded and finite, so a
malformed request is refused with a 422 that names the field before any engine sees it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Coord = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
Point = tuple[Coord, Coord]
ContentId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 content id (see wire.py)")]
Dim = Annotated[int, Field(ge=1, le=65536)]
EngineKey = Literal["litemedsam", "medplib"]
Orientation = Literal["axial", "coronal", "sagittal"]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. invalid_request, image_unknown")
    detail: str = Field(description="what is wrong, in words")
    field: str | None = Field(None, description="the request field at fault, when there is one")


class Health(BaseModel):
    status: Literal["ok"]
    server: str
    server_version: str
    api_version: str


class EngineDescription(BaseModel):
    key: str
    name: str
    version: str
    weights: str
    weights_sha256: str
    device: str
    capabilities: list[str]


class Info(BaseModel):
    server: str
    server_version: str
    api_version: str
    engines: list[EngineDescription]
    device: str
    python: str
    limits: dict[str, float]
    uptime_s: float


class MaskBody(Strict):
    shape: Annotated[list[Dim], Field(min_length=2, max_length=3)]
    encoding: Literal["zlib-packbits"] = "zlib-packbits"
    data: str = Field(description="base64 of zlib-compressed numpy.packbits of the row-major mask")


class ImageUpload(Strict):
    id: ContentId
    shape: Annotated[list[Dim], Field(min_length=2, max_length=3, description="[H, W] or [H, W, 3], uint8")]
    data: str = Field(description="base64 of zlib-compressed raw uint8 pixels")


class VolumeUpload(Strict):
    id: ContentId
    shape: Annotated[list[Dim], Field(min_length=3, max_length=3, description="[K, J, I]")]
    dtype: Literal["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
    spacing: tuple[Finite, Finite, Finite]
    origin: tuple[Finite, Finite, Finite]
    direction: Annotated[list[Finite], Field(min_length=9, max_length=9)]
    window: tuple[Finite, Finite] | None = None
    data: str


class StoredItem(BaseModel):
    id: str
    shape: list[int]
    stored: bool = Field(description="true when this request stored it, false when it was there")


class PromptBody(Strict):
    points: Annotated[list[Point], Field(max_length=256)] = []
    point_labels: Annotated[list[Literal[0, 1]], Field(max_length=256)] = []
    box: tuple[Coord, Coord, Coord, Coord] | None = None
    polygon: Annotated[list[Point], Field(min_length=3, max_length=10000)] | None = None
    region: MaskBody | None = None
    mask_input: MaskBody | None = None
    text: Annotated[str, Field(max_length=4000)] | None = None


class ImageRef(Strict):
    image: ContentId


class PredictRequest(Strict):
    image: ContentId
    prompt: PromptBody


class PreencodeRequest(Strict):
    images: Annotated[list[ContentId], Field(max_length=512)]


class Encoded(BaseModel):
    image: str
    image_shape: list[int]


class Cached(BaseModel):
    image: str
    cached: bool | None


class Queued(BaseModel):
    queued: int


class Prediction(BaseModel):
    mask: MaskBody
    score: float
    provenance: dict[str, Any]
    reason: str | None


class PropagateRequest(Strict):
    volume: ContentId
    orientation: Orientation = "axial"
    index: Annotated[int, Field(ge=0, le=65535)]
    seed: MaskBody
    window: tuple[Finite, Finite] | None = None


class PropagationOutcome(BaseModel):
    mask: MaskBody
    summary: dict[str, Any]
    axis: int
    seed_index: int


class JobStatus(BaseModel):
    job: str
    state: Literal["running", "done", "failed", "cancelled"]
    done: int
    total: int
    error: str | None
    result: PropagationOutcome | None = None


class GenerationBody(Strict):
    max_new_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    forced_answer: Annotated[str, Field(max_length=100_000)] | None = None
    ignore_eos: bool | None = None
    seg_fallback: bool | None = None
    # the answer ends where one of these appears (and is cut before it); None: the server's ("</s>")
    stop_strings: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                            Field(max_length=16)] | None = None


class ChatSettingsBody(GenerationBody):
    crop_mode: Literal["reference", "correct"] | None = None
    threshold: Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False)] | None = None
    drop_regions: bool | None = None
    region_max_points: Annotated[int, Field(ge=1, le=100_000)] | None = None
    region_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class RegionBody(Strict):
    """One drawn region: a point [x, y], several clicked points (one region), a box
    [x0, y0, x1, y1], a polygon [[x, y], ...] or a mask; the field named by ``kind`` is used."""

    kind: Literal["point", "points", "box", "polygon", "mask"]
    point: Point | None = None
    points: Annotated[list[Point], Field(min_length=1, max_length=256)] | None = None
    box: tuple[Coord, Coord, Coord, Coord] | None = None
    polygon: Annotated[list[Point], Field(min_length=3, max_length=10000)] | None = None
    mask: MaskBody | None = None


class HistoryItem(Strict):
    question: Annotated[str, Field(min_length=1, max_length=20000)]
    regions: Annotated[list[RegionBody], Field(max_length=16)] = []
    answer: Annotated[str, Field(max_length=100_000)]


class ConversationCreate(Strict):
    image: ContentId
    engine: EngineKey = "medplib"
    settings: ChatSettingsBody | None = None
    history: Annotated[list[HistoryItem], Field(max_length=64)] = []


class TurnSummary(BaseModel):
    question: str
    text: str
    grounded: bool


class ConversationStatus(BaseModel):
    conversation: str
    engine: str
    image: str
    busy: bool
    turns: list[TurnSummary]


class AskRequest(Strict):
    question: Annotated[str, Field(min_length=1, max_length=20000)]
    regions: Annotated[list[RegionBody], Field(max_length=16)] = []
    generation: GenerationBody | None = None


class Turn(BaseModel):
    """The ``turn`` event at the end of an answer stream."""

    question: str
    text: str
    masks: list[MaskBody]
    scores: list[float]
    provenance: dict[str, Any]
    stop_reason: str


class Cancelled(BaseModel):
    cancelled: bool


class Stats(BaseModel):
    store: dict[str, Any]
    segmentation_queue: int
    segmentation_done: int
    answers_active: int
    generation_steps: int
    conversations: int
    jobs: int
