"""``taskctl``: the operator's command line for a ringpool cluster.

``taskctl --help`` lists the commands; ``python -m ringpool.cli.taskctl`` is the same program.
"""

from __future__ import annotations

from ringpool.cli.taskctl.cli import cli, main

__all__ = ["cli", "main"]
