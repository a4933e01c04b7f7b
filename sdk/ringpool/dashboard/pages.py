"""Rendering pages: the templates, their filters, and what every page is given."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from ringpool.dashboard.auth import Role, csrf_token, role_of
from ringpool.ops.units import ago, when

if TYPE_CHECKING:
    from ringpool.dashboard.app import Dashboard

NAV = (("/", "Overview"), ("/tasks", "Tasks"), ("/dlq", "Dead letters"),
       ("/schedules", "Schedules"), ("/config", "Config"))


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def millis(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("ringpool.dashboard", "templates"),
                      autoescape=select_autoescape(["html", "svg"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, ago=ago, percent=percent, millis=millis)
    return Jinja2Templates(env=env)


def dashboard_of(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    dashboard = dashboard_of(request)
    role = role_of(request)
    context.update(
        nav=NAV, role=role, operator=role is Role.OPERATOR, csrf=csrf_token(request),
        cluster=dashboard.settings.cluster, path=request.url.path,
    )
    return templates().TemplateResponse(request, name, context, status_code=status_code)
