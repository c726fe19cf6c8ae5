"""Segmentation: encode an uploaded slice, prompt it, pre-encode, propagate a volume in 3D.

The paths mirror `SegmentationEngine` / `EngineSession`: ``encode``, ``predict``,
``is_cached`` (``cached``), ``preencode``; 3D propagation is a job with progress and cancel.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from . import convert
from .schemas import (
    Cached, ContentId, EngineDescription, EngineKey, Encoded, ImageRef, JobStatus, Prediction,
    PredictRequest, PreencodeRequest, PropagateRequest, Queued)


def segment_router() -> APIRouter:
    from .app import counted_client

    r = APIRouter(tags=["segmentation"])

    def host_of(request: Request):
        return request.app.state.host

    @r.get("/engines/{engine}", response_model=EngineDescription)
    async def engine_info(request: Request, engine: EngineKey = Path()) -> dict[str, Any]:
        """Name, version, weights checksum, device and capabilities of one served engine."""
        return host_of(request).engine_info(engine)

    @r.post("/engines/{engine}/encode", response_model=Encoded)
    async def encode(request: Request, body: ImageRef, engine: EngineKey = Path(),
                     client: str = Depends(counted_client)) -> dict[str, Any]:
        """Encode an uploaded slice now (the expensive step); later prompts on it are cheap."""
        shape = await asyncio.wrap_future(host_of(request).encode(engine, body.image))
        return {"image": body.image, "image_shape": list(shape)}

    @r.post("/engines/{engine}/predict", response_model=Prediction)
    async def predict(request: Request, body: PredictRequest, engine: EngineKey = Path(),
                      client: str = Depends(counted_client)) -> dict[str, Any]:
        """Decode one prompt on an uploaded slice: a compressed mask, its score and provenance."""
        host = host_of(request)
        prompt = convert.prompt(body.prompt, host.config.limits.client_memory_bytes)
        res = await asyncio.wrap_future(host.predict(engine, body.image, prompt))
        return convert.prediction(res)

    @r.get("/engines/{engine}/cached/{image}", response_model=Cached)
    async def cached(request: Request, engine: EngineKey = Path(), image: ContentId = Path()) -> dict[str, Any]:
        """Whether a prompt on this slice will find its encoding ready (null: unknown)."""
        return {"image": image, "cached": host_of(request).is_cached(engine, image)}

    @r.post("/engines/{engine}/preencode", response_model=Queued, status_code=202)
    async def preencode(request: Request, body: PreencodeRequest, engine: EngineKey = Path(),
                        client: str = Depends(counted_client)) -> dict[str, Any]:
        """Encode these uploaded slices in the background, nearest first (replaces the
        client's earlier list; slices the server lacks are skipped)."""
        return {"queued": host_of(request).preencode(engine, body.images, client)}

    @r.post("/engines/{engine}/propagate", response_model=JobStatus, status_code=202)
    async def propagate(request: Request, body: PropagateRequest, engine: EngineKey = Path(),
                        client: str = Depends(counted_client)) -> dict[str, Any]:
        """Start 3D propagation of a seed mask drawn on a displayed slice of an uploaded volume."""
        host = host_of(request)
        seed = convert.mask(body.seed, "seed", host.config.limits.client_memory_bytes)
        job = host.jobs.start(client, engine, body.volume, body.orientation, body.index, seed,
                              tuple(body.window) if body.window else None)
        return job.describe()

    @r.get("/jobs/{job}", response_model=JobStatus)
    async def job_status(request: Request, job: str = Path(max_length=64)) -> dict[str, Any]:
        """Progress of a propagation; the 3D mask once ``state`` is ``done``."""
        j = host_of(request).jobs.get(job)
        out = j.describe()
        if j.state == "done":
            out["result"] = convert.propagation(j.result)
        return out

    @r.delete("/jobs/{job}", response_model=JobStatus)
    async def cancel_job(request: Request, job: str = Path(max_length=64)) -> dict[str, Any]:
        """Cancel a propagation (it stops before its next slice)."""
        return host_of(request).jobs.cancel(job).describe()

    return r
