"""Signing in with a token, and out."""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ringpool.dashboard.auth import Role, check_csrf, csrf_token, mutation, role_for, safe_next
from ringpool.dashboard.pages import dashboard_of, render

log = logging.getLogger(__name__)
FAILED_SIGN_IN_DELAY_S = 0.5  # slows down guessing


async def sign_in_page(request: Request) -> Response:
    return render(request, "login.html", next=safe_next(request.query_params.get("next")),
                  error="")


async def sign_in(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    target = safe_next(form.get("next"))
    token = form.get("token")
    role = role_for(dashboard_of(request).settings, token if isinstance(token, str) else "")
    if role is None:
        log.warning("failed sign-in from %s", request.client.host if request.client else "?")
        await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
        return render(request, "login.html", status_code=401, next=target,
                      error="That token signs in to nothing here.")
    # A fresh session: the role and a new CSRF token, nothing carried over.
    request.session.clear()
    request.session["role"] = role.value
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


@mutation(Role.VIEWER)
async def sign_out(request: Request, form: FormData) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


routes = [
    Route("/login", sign_in_page, methods=["GET"]),
    Route("/login", sign_in, methods=["POST"]),
    Route("/logout", sign_out, methods=["POST"]),
]
