"""Generated gRPC and protobuf code for ``proto/ringpool/v1`` (regenerate with ``make proto``).

Import the stubs as ``from sdk.rpc.ringpool.v1 import node_pb2 as pb``.
"""
