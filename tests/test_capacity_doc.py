"""docs/capacity.md shows what the benchmarks' results say (re-render with
``python -m bench.capacity_model --write`` after re-running them)."""

from __future__ import annotations

from bench.capacity_model import END, PAGE, START, render


def test_the_capacity_page_renders_the_saved_results() -> None:
    page = PAGE.read_text()
    generated = page.split(START, 1)[1].split(END, 1)[0].strip()
    assert generated == render(nodes=100, rate=1_000_000, clients=50)


def test_the_readme_links_the_capacity_page() -> None:
    readme = (PAGE.parents[1] / "README.md").read_text()
    assert "(docs/capacity.md)" in readme
