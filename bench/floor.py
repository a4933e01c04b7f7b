"""The round-trip floor: the hops of a ringpool W2 round trip with none of its logic.

``python -m bench.floor [--trips 1000] [--json PATH]``

What one trip crosses, as in ``cluster.dispatch(key, noop.s()).result()``:

  caller thread -> private event loop (uvloop) -> gRPC bidi stream -> server loop
  -> Redis script (fingerprint SET NX EX, record HSET, in-flight SADD)
  -> a worker thread (the no-op) -> Redis script (record HSET, in-flight SREM)
  -> the same stream back -> private loop -> caller thread

and nothing else: no routing, validation, batching, fencing, metrics or tracing.
Whatever ringpool's W2 costs above this, its own code costs; what this costs, any
implementation of the same guarantees on these hops pays. It starts its own
``redis-server`` and one server process, and leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aredis
import uvloop
from grpc import aio

from bench.peers import percentile
from bench.saving import RESULTS, save
from ringpool.testing.local import RedisServer, free_port

METHOD = "/bench.Floor/Trip"
WARM_UP = 200
ACCEPT = """redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 60)
redis.call('HSET', KEYS[2], 'state', 'QUEUED', 'envelope', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1"""
FINISH = """redis.call('HSET', KEYS[2], 'state', 'SUCCEEDED', 'result', 'null')
redis.call('SREM', KEYS[3], ARGV[1])
return 1"""


async def serve(port: int, redis_url: str) -> None:
    store = aredis.Redis.from_url(redis_url)
    accept, finish = store.register_script(ACCEPT), store.register_script(FINISH)
    loop = asyncio.get_running_loop()

    async def trip(requests: AsyncIterator[bytes], _: aio.ServicerContext) -> AsyncIterator[bytes]:
        async for request in requests:
            task_id = request[:16].decode()
            keys = [f"fp:{task_id}", f"task:{task_id}", "inflight"]
            await accept(keys=keys, args=[task_id, request])
            await loop.run_in_executor(None, lambda: None)
            await finish(keys=keys, args=[task_id])
            yield request

    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Floor", {"Trip": grpc.stream_stream_rpc_method_handler(trip)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def round_trips(port: int, trips: int) -> list[float]:
    """Seconds per trip, sequentially from this thread through a private loop."""
    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def open_stream() -> tuple[aio.Channel, Any]:
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), 30)
        return channel, channel.stream_stream(METHOD)()

    channel, call = asyncio.run_coroutine_threadsafe(open_stream(), loop).result()

    async def one(index: int) -> bytes:
        await call.write(b"%016d" % index + b"x" * 100)
        return await asyncio.wait_for(call.read(), 10)  # type: ignore[no-any-return]

    samples = []
    try:
        for index in range(WARM_UP + trips):
            started = time.perf_counter()
            asyncio.run_coroutine_threadsafe(one(index), loop).result()
            samples.append(time.perf_counter() - started)
    finally:
        call.cancel()
        asyncio.run_coroutine_threadsafe(channel.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
    return samples[WARM_UP:]


def run(trips: int = 1_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ringpool-floor-") as workdir:
        redis_server = RedisServer(Path(workdir)).start()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "--serve", str(port), "--redis", redis_server.url],
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            samples = [seconds * 1e3 for seconds in round_trips(port, trips)]
        finally:
            server.kill()
            server.wait(10)
            redis_server.stop()
    return {
        "trips": trips,
        "p50_ms": percentile(samples, 50),  # as W2 computes them
        "p99_ms": percentile(samples, 99),
        "hops": "caller thread -> uvloop -> gRPC bidi -> Redis script -> worker thread "
                "-> Redis script -> gRPC -> uvloop -> caller thread",
    }


def describe(result: dict[str, Any]) -> str:
    return (f"round-trip floor ({result['trips']} trips, {result['hops']}): "
            f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=RESULTS / "floor.json")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        uvloop.run(serve(args.serve, args.redis))
        return 0
    result = run(args.trips)
    print(describe(result))
    save(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
