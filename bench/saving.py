"""Where the benchmarks keep their results (``bench/results/``), and how they write them:
indented JSON, the folder made on the way, and a line that says where; results kept by
label are merged into what the file already holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as indented JSON, and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def saved(path: Path) -> dict[str, Any]:
    """What ``path`` holds (results by label), or nothing yet."""
    return json.loads(path.read_text()) if path.exists() else {}
