"""A TCP proxy that the nemesis can cut: one node reaches Redis only through it.

``cut()`` drops every open connection and then holds new ones open without
forwarding a byte (a black hole, as a dead link looks to the client: nothing is
refused, nothing answers). ``restore()`` lets traffic through again. The proxy runs
its own event loop on a daemon thread, so the caller's threads never block on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 64 * 1024


class CuttableProxy:
    """``127.0.0.1:<port>`` forwards to ``target_host:target_port`` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nemesis-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> CuttableProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """Drop every connection through the proxy; hold new ones silent until restored."""
        self._call(self._set_cut(True))

    def restore(self) -> None:
        """Forward again; connections held while cut are dropped, so clients reconnect."""
        self._call(self._set_cut(False))

    def close(self) -> None:
        if self._server is not None:
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, step: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(step, self._loop).result(timeout=10)

    async def _set_cut(self, cut: bool) -> None:
        self._cut = cut
        for writer in list(self._writers):
            writer.transport.abort()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._set_cut(True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self._cut:
                while await reader.read(CHUNK):  # a black hole: drop all until aborted
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return  # the server is down: the client sees its connection close
            self._writers.add(up_writer)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()  # one side ended: end the other, as a broken link would
