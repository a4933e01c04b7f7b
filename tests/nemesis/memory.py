"""Node memory over the run: every node process's resident set, sampled from /proc."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

SAMPLE_EVERY_S = 2.0


def rss_bytes(pid: int) -> int | None:
    """The resident set size of ``pid`` (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None  # a zombie has no VmRSS


class RssSampler:
    """Samples the processes ``pids()`` names (pid -> node id) until stopped."""

    def __init__(self, pids: Callable[[], dict[int, str]], every_s: float = SAMPLE_EVERY_S) -> None:
        self._pids = pids
        self._every_s = every_s
        self.samples: dict[int, list[tuple[float, int]]] = {}  # pid -> [(time, bytes)]
        self.node_of: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis-rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self, now: float) -> None:
        for pid, node in self._pids().items():
            rss = rss_bytes(pid)
            if rss is not None:
                self.node_of[pid] = node
                self.samples.setdefault(pid, []).append((now, rss))

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.sample(time.time())

    def peaks(self) -> dict[str, int]:
        """The largest resident set each node id had, over all its processes."""
        peaks: dict[str, int] = {}
        for pid, series in self.samples.items():
            node = self.node_of[pid]
            peaks[node] = max(peaks.get(node, 0), *(rss for _, rss in series))
        return peaks
