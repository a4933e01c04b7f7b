"""``python -m tests.nemesis``: a nemesis run from the command line (``make chaos``).

Exits 0 when every check holds, 1 otherwise; the report names the seed to rerun.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path

from tests.nemesis.run import Options, run_nemesis
from tests.nemesis.workload import Mix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults run")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (random)")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=Mix.rate_per_s, help="tasks per second")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where logs and report.md go (a new temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # lost connections are the point here
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"ringpool-nemesis-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    options = Options(seed=seed, minutes=args.minutes, nodes=args.nodes,
                      mix=Mix(rate_per_s=args.rate))
    report = run_nemesis(options, workdir, log=lambda line: print(line, flush=True))
    print(f"\nrerun with: make chaos CHAOS_SEED={seed} CHAOS_MINUTES={args.minutes:g}"
          f"  (report: {workdir / 'report.md'})")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
