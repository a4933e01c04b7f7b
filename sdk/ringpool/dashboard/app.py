"""The ASGI application: routes, sessions, security headers, and error pages."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from kazoo.client import KazooClient
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringpool.core.ring import Ring
from ringpool.dashboard import pages
from ringpool.dashboard.auth import Refused, RequireSignIn
from ringpool.dashboard.jobs import Jobs
from ringpool.dashboard.live import ClusterView
from ringpool.dashboard.ringsvg import RingPicture, picture
from ringpool.dashboard.settings import DashboardSettings
from ringpool.dashboard.views import config, dlq, overview, schedules, session, tasks
from ringpool.errors import ClusterUnavailable, ConfigError, ScheduleNotFound, TaskNotFound
from ringpool.store.store import StateStore

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Dashboard:
    """What the pages read and act through."""

    settings: DashboardSettings
    zk: KazooClient
    store: StateStore
    view: ClusterView
    jobs: Jobs
    _picture: RingPicture | None = None

    def picture(self, ring: Ring) -> RingPicture:
        """The ring's picture, drawn once per ring version."""
        if self._picture is None or self._picture.version != ring.version:
            self._picture = picture(ring, pages.templates().get_template("_ring.html"))
        return self._picture


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/events"))


async def refused(request: Request, exc: Exception) -> Response:
    status, message = _status_of(exc)
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return pages.render(request, "error.html", status_code=status, status=status,
                        message=message)


def _status_of(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Refused):
        return exc.status, exc.message
    if isinstance(exc, TaskNotFound | ScheduleNotFound):
        return 404, str(exc)
    if isinstance(exc, ConfigError):
        return 400, str(exc)
    if isinstance(exc, RedisError):
        return 503, f"cannot reach Redis: {exc}"
    return 503, str(exc) or type(exc).__name__


@lru_cache(maxsize=1)
def _static() -> StaticFiles:
    return StaticFiles(packages=[("ringpool.dashboard", "static")])


def create_app(dashboard: Dashboard) -> Starlette:
    settings = dashboard.settings
    app = Starlette(
        routes=[
            *session.routes, *overview.routes, *schedules.routes, *tasks.routes, *dlq.routes,
            *config.routes,
            Route("/healthz", healthz),
            Mount("/static", app=_static(), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(SessionMiddleware, secret_key=settings.session_secret,
                       session_cookie="ringpool_dashboard", max_age=settings.session_max_age_s,
                       same_site="strict", https_only=settings.tls),
            Middleware(RequireSignIn),
        ],
        exception_handlers={Refused: refused, TaskNotFound: refused, ScheduleNotFound: refused,
                            ConfigError: refused,
                            RedisError: refused, ClusterUnavailable: refused},
    )
    app.state.dashboard = dashboard
    return app
