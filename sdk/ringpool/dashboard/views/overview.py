"""The overview: nodes, the ring and its picture, throughput and latency, live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ringpool.core.envelope import check_key
from ringpool.dashboard.forms import BadInput
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.dashboard.ringsvg import key_angle_deg
from ringpool.errors import InvalidKey, NoNodesAvailable


def route_of(request: Request, key: str) -> dict[str, Any] | None:
    """Where ``key`` goes on the current ring; None when nobody owns it (empty ring)."""
    try:
        check_key(key)
    except InvalidKey as exc:
        raise BadInput(f"key: {exc}") from None
    ring = dashboard_of(request).view.ring
    try:
        owner = ring.owner(key)
    except NoNodesAvailable:
        return None
    return {"key": key, "owner": owner, "address": ring.members[owner].addr,
            "angle": round(key_angle_deg(key), 2), "ring_version": ring.version}


async def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    key = request.query_params.get("key", "")
    found = route_of(request, key) if key else None
    ring = dashboard.view.ring
    snapshot = dashboard.view.snapshot
    drawn = dashboard.picture(ring)
    return render(request, "overview.html", snapshot=snapshot, picture=drawn, key=key,
                  found=found, colours=drawn.colours,
                  live=json.dumps(snapshot.to_dict()).replace("</", "<\\/"))


async def nodes(request: Request) -> Response:
    """The nodes table alone, for a live page to swap in."""
    dashboard = dashboard_of(request)
    return render(request, "_nodes.html", snapshot=dashboard.view.snapshot,
                  colours=dashboard.picture(dashboard.view.ring).colours)


async def ring_picture(request: Request) -> Response:
    """The ring picture alone, for a page to swap in when the ring changes."""
    dashboard = dashboard_of(request)
    return HTMLResponse(dashboard.picture(dashboard.view.ring).svg)


async def route(request: Request) -> Response:
    key = request.query_params.get("key", "")
    found = route_of(request, key)
    if found is None:
        return JSONResponse({"error": "the ring has no members"}, status_code=503)
    return JSONResponse(found)


async def snapshot(request: Request) -> Response:
    return JSONResponse(dashboard_of(request).view.snapshot.to_dict())


async def events(request: Request) -> Response:
    """Server-sent events: each new snapshot as it is polled."""
    view = dashboard_of(request).view

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async for current in view.snapshots():
            yield f"data: {json.dumps(current.to_dict())}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


routes = [
    Route("/", overview),
    Route("/ring", ring_picture),
    Route("/nodes", nodes),
    Route("/api/route", route),
    Route("/api/snapshot", snapshot),
    Route("/events", events),
]
