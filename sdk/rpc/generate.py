"""Regenerate the committed stubs from ``proto/``: ``python -m sdk.rpc.generate [OUT_DIR]``.

protoc writes absolute imports (``from ringpool.v1 import ...``); they are
rewritten to live under ``sdk.rpc`` so that the stubs need no path tricks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "sdk" / "rpc"


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
    written = sorted(out_dir.glob("ringpool/**/*.py*"))
    for path in written:
        text = re.sub(r"^from ringpool\.", "from sdk.rpc.ringpool.", path.read_text(), flags=re.M)
        path.write_text(text)
    for package in {p.parent for p in written} | {out_dir / "ringpool"}:
        (package / "__init__.py").touch()
    return written


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
