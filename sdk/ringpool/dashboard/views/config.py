"""The cluster config: every key with its value, default and meaning; operators change
values, all validated together by ``ringpool.core.config`` before anything is written,
and written only if nobody changed the config since the page was shown."""

from __future__ import annotations

import asyncio

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.core import config as schema
from ringpool.core.config import ClusterConfig, ConfigConflict, StoredConfig
from ringpool.dashboard.auth import Refused, mutation
from ringpool.dashboard.forms import BadInput
from ringpool.dashboard.pages import dashboard_of, render
from ringpool.errors import ConfigError
from ringpool.ops.units import show_rate_limit

DEFAULTS = ClusterConfig().flat()


async def _read(request: Request) -> StoredConfig:
    dashboard = dashboard_of(request)
    return await asyncio.to_thread(schema.read_config, dashboard.zk, dashboard.settings.cluster)


def _page(request: Request, stored: StoredConfig, status_code: int = 200, error: str = "",
          typed: dict[str, str] | None = None, saved: list[str] | None = None) -> Response:
    values = stored.config.flat()
    rows = [{"key": key, "value": (typed or {}).get(key, _show(values[key], key)),
             "default": _show(DEFAULTS.get(key), key), "changed": values[key] != DEFAULTS.get(key),
             "meaning": schema.describe(key)} for key in values]
    return render(request, "config.html", status_code=status_code, rows=rows, stored=stored,
                  error=error, saved=saved or [])


def _show(value: object, key: str) -> str:
    if key.startswith(schema.RATE_PREFIX):  # set by taskctl; shown (and changed) here
        return show_rate_limit(value if value is None else float(str(value)))
    return f"{value:g}" if isinstance(value, float) else str(value)


async def view(request: Request) -> Response:
    stored = await _read(request)
    keys = stored.config.flat()
    saved = [k for k in request.query_params.get("saved", "").split(",") if k in keys]
    return _page(request, stored, saved=saved)


@mutation()
async def change(request: Request, form: FormData) -> Response:
    dashboard = dashboard_of(request)
    stored = await _read(request)
    version = str(form.get("version", ""))
    if version != str(stored.version):
        raise Refused(409, "the config changed since this page was shown (znode version "
                           f"{version} -> {stored.version}); nothing was written: reload and "
                           "make your change again")
    current = {key: _show(value, key) for key, value in stored.config.flat().items()}
    typed = {key: str(form[key]).strip() for key in current if key in form}
    changes = {key: text for key, text in typed.items() if text != current[key]}
    unknown = sorted(set(form.keys()) - set(current) - {"csrf", "version"})
    if unknown:
        raise BadInput(f"unknown config keys: {', '.join(unknown)}")
    if not changes:
        return RedirectResponse("/config", status_code=303)
    try:
        updated = stored.config.with_values(changes)
        await asyncio.to_thread(schema.write_config, dashboard.zk, dashboard.settings.cluster,
                                updated, stored.version)
    except ConfigConflict as exc:
        raise Refused(409, f"{exc}; nothing was written") from None
    except ConfigError as exc:
        return _page(request, stored, status_code=400, typed=typed,
                     error=f"{exc}; nothing was written")
    return RedirectResponse(f"/config?saved={','.join(changes)}", status_code=303)


routes = [
    Route("/config", view, methods=["GET"]),
    Route("/config", change, methods=["POST"]),
]
