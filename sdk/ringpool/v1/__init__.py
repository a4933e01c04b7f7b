"""Generated gRPC and protobuf code for ``proto/ringpool/v1`` (regenerate with ``make proto``)."""
