"""Who may call the node: two bearer tokens, two roles, compared in constant time.

An **app** token (``--token``) may submit new tasks and read their results on the
stream. The **operator** token (``--operator-token``, held by the coordinator and
``taskctl``) may do that and more: send retries, replays and due delayed tasks
(``source`` RETRY, REPLAY or SCHEDULED, checked per envelope by the node) and call
``Status`` and ``Drain``. A node
has both tokens or neither; with neither, every caller is an operator. The gRPC
health check is always open, so probes need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any

import grpc
from grpc import aio

UNCHECKED_PREFIXES = ("/grpc.health.v1.Health/",)
OPERATOR_METHODS = frozenset({"/ringpool.v1.Node/Status", "/ringpool.v1.Node/Drain"})


class Role(Enum):
    #: May submit new tasks and read their results.
    APP = "app"
    #: May also send retries, replays and due delayed tasks, read a node's status and
    #: drain it.
    OPERATOR = "operator"


class Credentials:
    """The node's two tokens, and the role each caller's ``authorization`` header gives."""

    def __init__(self, token: str = "", operator_token: str = "") -> None:
        self.required = bool(token or operator_token)
        self._tokens = [(f"Bearer {secret}".encode(), role) for secret, role in
                        ((operator_token, Role.OPERATOR), (token, Role.APP)) if secret]

    def role(self, metadata: Sequence[tuple[str, Any]] | None) -> Role | None:
        """The caller's role; None when its token is missing or wrong."""
        if not self.required:
            return Role.OPERATOR
        given = dict(metadata or ()).get("authorization", "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        # Compared with every token, so the time taken does not tell which one is closer.
        matches = [role for expected, role in self._tokens
                   if hmac.compare_digest(given_bytes, expected)]
        return matches[0] if matches else None

    def is_operator(self, context: aio.ServicerContext) -> bool:
        return self.role(context.invocation_metadata()) is Role.OPERATOR


def _deny(code: grpc.StatusCode, message: str, streaming: bool) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: aio.ServicerContext) -> None:
        await context.abort(code, message)

    if streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class TokenAuth(aio.ServerInterceptor):
    """UNAUTHENTICATED without a valid token; PERMISSION_DENIED for an app calling an
    operator's method."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(UNCHECKED_PREFIXES):
            return await continuation(details)
        metadata = details.invocation_metadata
        role = self.credentials.role(metadata)
        if role is Role.OPERATOR or (role is Role.APP and details.method not in OPERATOR_METHODS):
            return await continuation(details)
        handler = await continuation(details)
        streaming = handler is not None and handler.request_streaming
        if role is Role.APP:
            name = details.method.rsplit("/", 1)[-1]
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"{name} needs the operator token", streaming)
        given = dict(metadata or ()).get("authorization")
        return _deny(grpc.StatusCode.UNAUTHENTICATED,
                     "wrong token" if given else "missing token", streaming)
