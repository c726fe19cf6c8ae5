"""Uploads by content id: ask first (GET), send only what the server lacks (POST)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from . import wire
from .host import EngineHost
from .schemas import ContentId, ImageUpload, StoredItem, VolumeUpload


def images_router() -> APIRouter:
    from .app import counted_client

    r = APIRouter(tags=["uploads"])

    @r.get("/images/{image}", response_model=StoredItem)
    async def image_status(request: Request, image: ContentId = Path()) -> dict[str, Any]:
        """Whether the server holds this slice (404 ``image_unknown`` when not: upload it)."""
        arr = request.app.state.host.image(image)
        return {"id": image, "shape": list(arr.shape), "stored": False}

    async def store(request: Request, body, decode, put, client: str) -> dict[str, Any]:
        host = request.app.state.host
        item = await run_in_threadpool(decode, body.model_dump(), host.config.limits.client_memory_bytes)
        stored = put(host, body.id, item, client)
        shape = item.array.shape if hasattr(item, "array") else item.shape
        return {"id": body.id, "shape": list(shape), "stored": stored}

    @r.post("/images", response_model=StoredItem)
    async def upload_image(request: Request, body: ImageUpload,
                           client: str = Depends(counted_client)) -> dict[str, Any]:
        """Store a displayed slice (uint8) under its SHA-256 content id."""
        return await store(request, body, wire.image_from_payload, EngineHost.put_image, client)

    @r.get("/volumes/{volume}", response_model=StoredItem)
    async def volume_status(request: Request, volume: ContentId = Path()) -> dict[str, Any]:
        """Whether the server holds this volume (404 ``volume_unknown`` when not)."""
        vol = request.app.state.host.volume(volume)
        return {"id": volume, "shape": list(vol.array.shape), "stored": False}

    @r.post("/volumes", response_model=StoredItem)
    async def upload_volume(request: Request, body: VolumeUpload,
                            client: str = Depends(counted_client)) -> dict[str, Any]:
        """Store a grey volume ([K, J, I] voxels and geometry) for 3D propagation."""
        return await store(request, body, wire.volume_from_payload, EngineHost.put_volume, client)

    return r
