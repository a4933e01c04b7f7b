"""Middleware: a chain around task execution, in registration order.

A sync middleware ``def mw(ctx, call_next)`` wraps io and cpu tasks on the thread
that runs them; an async one ``async def mw(ctx, call_next)`` wraps async tasks on
the event loop and awaits ``call_next()``. The first registered is the outermost,
so its code before ``call_next`` runs first and its code after runs last. What a
middleware raises is the task's failure: it sits inside the task's boundary.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ringpool.task import TaskContext

Middleware = Callable[[TaskContext, Callable[[], Any]], Any]
AsyncMiddleware = Callable[[TaskContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Chain:
    """The registered middleware; read lock-free by workers (each add swaps in a new tuple)."""

    def __init__(self) -> None:
        self.sync: tuple[Middleware, ...] = ()
        self.aio: tuple[AsyncMiddleware, ...] = ()

    def add(self, middleware: Middleware | AsyncMiddleware) -> None:
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {middleware!r}")
        if inspect.iscoroutinefunction(middleware) or inspect.iscoroutinefunction(
            getattr(middleware, "__call__", None)  # noqa: B004 - an object with async __call__
        ):
            self.aio = (*self.aio, middleware)
        else:
            self.sync = (*self.sync, middleware)  # type: ignore[arg-type]

    def run(self, ctx: TaskContext, call: Callable[[], Any]) -> Any:
        chain = self.sync
        if not chain:
            return call()

        def step(i: int) -> Any:
            if i == len(chain):
                return call()
            return chain[i](ctx, lambda: step(i + 1))

        return step(0)

    async def run_async(self, ctx: TaskContext, call: Callable[[], Awaitable[Any]]) -> Any:
        chain = self.aio

        async def step(i: int) -> Any:
            if i == len(chain):
                return await call()
            return await chain[i](ctx, lambda: step(i + 1))

        return await step(0)
