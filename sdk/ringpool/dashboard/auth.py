"""Who may look and who may act: token sign-in, the session cookie, CSRF tokens.

Two tokens sign in: the operator token (every right) and the viewer token (read only).
The session is a signed cookie (HttpOnly, SameSite=Strict, Secure when served over
TLS) holding the role and a CSRF token; every change is a POST whose form carries
that token, checked before anything else happens. GET never changes anything.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import wraps
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ringpool.dashboard.settings import DashboardSettings

OPEN_PATHS = ("/login", "/static/", "/healthz")


class Role(StrEnum):
    #: Reads everything, changes nothing.
    VIEWER = "viewer"
    #: Also replays and purges dead letters and changes the config.
    OPERATOR = "operator"


class Refused(Exception):
    """A request refused with an HTTP status and a message for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def role_for(settings: DashboardSettings, token: str) -> Role | None:
    """The role a token signs in as (compared in constant time), or None."""
    given = token.encode()
    found = None
    for role, expected in ((Role.OPERATOR, settings.operator_token),
                           (Role.VIEWER, settings.viewer_token)):
        if expected and hmac.compare_digest(given, expected.encode()):
            found = role
    return found


def role_of(request: Request) -> Role | None:
    value = request.session.get("role")
    return Role(value) if value in (Role.VIEWER, Role.OPERATOR) else None


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form: FormData) -> None:
    expected = request.session.get("csrf")
    given = form.get("csrf") or request.headers.get("x-csrf-token", "")
    if not (isinstance(expected, str) and isinstance(given, str)
            and hmac.compare_digest(given.encode(), expected.encode())):
        raise Refused(403, "missing or wrong CSRF token: reload the page and try again; "
                           "nothing was changed")


Handler = Callable[[Request], Awaitable[Response]]
FormHandler = Callable[[Request, FormData], Awaitable[Response]]


def mutation(role: Role = Role.OPERATOR) -> Callable[[FormHandler], Handler]:
    """A POST handler that runs only for ``role`` with this session's CSRF token."""

    def decorate(handler: FormHandler) -> Handler:
        @wraps(handler)
        async def checked(request: Request) -> Response:
            form = await request.form()
            check_csrf(request, form)
            if role is Role.OPERATOR and role_of(request) is not Role.OPERATOR:
                raise Refused(403, "signed in read-only: viewers cannot change anything")
            return await handler(request, form)

        return checked

    return decorate


class RequireSignIn:
    """Sends a request without a signed-in session to the sign-in page (pages) or
    answers 401 (everything else)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if role_of(request) is not None:
            await self.app(scope, receive, send)
            return
        response: Response
        if request.method == "GET" and not path.startswith(("/api/", "/events")):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        else:
            response = Response("sign in first", status_code=401, media_type="text/plain")
        await response(scope, receive, send)


def safe_next(target: Any) -> str:
    """Where to go after signing in: a path on this site only."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"
