"""Regenerate the committed stubs from ``proto/``: ``python proto/generate.py [OUT_DIR]``.

The protos live under ``ringpool/v1/``, so protoc's own imports (``from ringpool.v1
import ...``) already name the client library's ``ringpool.v1`` package: the stubs
are written as protoc makes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_DIR.parent / "sdk"  # the stubs land in sdk/ringpool/v1/


def generate(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted(p for p in out_dir.glob("ringpool/v*/*_pb2*.py*"))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
