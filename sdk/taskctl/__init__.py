"""``taskctl``: the operator's command line for a ringpool cluster.

``taskctl --help`` lists the commands; ``python -m sdk.taskctl`` is the same program.
"""

from __future__ import annotations

from sdk.taskctl.cli import cli, main

__all__ = ["cli", "main"]
