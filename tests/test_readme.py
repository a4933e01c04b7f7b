"""The README promises what the code keeps, and no more: execution is at-least-once."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"### {title}\n")
    end = README.index("\n#", start + 1)
    return README[start:end]


def test_no_claim_that_fingerprints_make_repeats_harmless() -> None:
    overstated = re.compile(r"fingerprints? (?:makes?|keeps?) (?:effects idempotent|repeats "
                            r"harmless)", re.I)
    assert not overstated.findall(re.sub(r"\s+", " ", README))


def test_the_readme_says_exactly_what_can_run_twice_and_when() -> None:
    text = re.sub(r"\s+", " ", section("What can run twice"))
    assert "Fingerprints dedupe *submissions*" in re.sub(r"\s+", " ", README)
    assert "at-least-once" in re.sub(r"\s+", " ", README)
    for case in ("a node dies", "stalls past its session", "cut off from Redis",
                 "a drain runs past", "an `io` task passes its timeout", "a task fails",
                 "replays a dead letter"):
        assert case in text, case
    assert "exactly one final outcome" in text
    assert "fingerprint TTL" in text
