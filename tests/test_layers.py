"""The folder tree is the architecture: who may import whom, checked on every import
statement (module level or inside a function) of every package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "ringpool": ROOT / "sdk" / "ringpool",
    "ringpool_node": ROOT / "node" / "ringpool_node",
    "ringpool_coordinator": ROOT / "coordinator" / "ringpool_coordinator",
}
MODEL = {"ringpool", "ringpool.errors", "ringpool.task", "ringpool.v1"}
CORE = MODEL | {"ringpool.core"}
# Inside the client library: each layer and the layers it may use (itself included).
CLIENT_LAYERS: dict[str, set[str]] = {
    "ringpool.core": CORE,
    "ringpool.store": CORE | {"ringpool.store"},
    "ringpool.pool": MODEL | {"ringpool.pool"},
    "ringpool.client": CORE | {"ringpool.store", "ringpool.client"},
    # Operator actions shared by taskctl and the dashboard.
    "ringpool.ops": CORE | {"ringpool.store", "ringpool.client", "ringpool.ops"},
    # Operator tooling, like ringpool.cli: any layer of the client library but the testing
    # helpers.
    "ringpool.dashboard": CORE | {"ringpool.store", "ringpool.pool", "ringpool.client",
                                  "ringpool.ops", "ringpool.cli", "ringpool.dashboard"},
}


def _module_name(path: Path, package: str) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    return ".".join((package, *[p for p in parts if p != "__init__"]))


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: use absolute imports, so the layers stay visible"
            if node.module:
                yield node.module
                # `from ringpool import demo` imports the submodule ringpool.demo
                yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _edges(package: str) -> list[tuple[str, str]]:
    edges = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        if "v1" in path.relative_to(PACKAGES[package]).parts:
            continue  # generated stubs
        module = _module_name(path, package)
        edges += [(module, imported) for imported in _imports(path)]
    return edges


def _top(name: str) -> str:
    return name.split(".")[0]


def _layer(name: str) -> str:
    return ".".join(name.split(".")[:2])


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_import_only_what_their_layer_allows(package: str) -> None:
    forbidden = {
        "ringpool": {"ringpool_node", "ringpool_coordinator"},
        "ringpool_node": {"ringpool_coordinator"},
        "ringpool_coordinator": {"ringpool_node"},
    }[package]
    wrong = [(m, i) for m, i in _edges(package) if _top(i) in forbidden]
    assert not wrong, f"{package} imports what it must not: {wrong}"


def test_client_library_layers() -> None:
    wrong = []
    for module, imported in _edges("ringpool"):
        allowed = CLIENT_LAYERS.get(_layer(module))
        if allowed is None or _top(imported) != "ringpool":
            continue
        if imported not in allowed and _layer(imported) not in allowed:
            wrong.append((module, imported))
    assert not wrong, f"a layer of the client library reaches above itself: {wrong}"


def test_no_generic_top_level_names() -> None:
    for folder in ("sdk", "node", "coordinator"):
        packages = {p.name for p in (ROOT / folder).iterdir() if (p / "__init__.py").exists()}
        assert packages <= set(PACKAGES), f"{folder}/ holds packages outside the namespace: {packages}"


def _outside_the_store() -> Iterator[tuple[Path, ast.AST]]:
    store = PACKAGES["ringpool"] / "store"
    for root in PACKAGES.values():
        for path in sorted(root.rglob("*.py")):
            if store in path.parents or "v1" in path.relative_to(root).parts:
                continue
            yield from ((path, node) for node in ast.walk(ast.parse(path.read_text(), str(path))))


def test_only_the_state_store_spells_redis_keys_or_talks_to_redis() -> None:
    keys, clients = [], []
    for path, node in _outside_the_store():
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        # f"ringpool:{{{cluster}}}:..." holds the constant "ringpool:{" too
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and "ringpool:{" in node.value:
            keys.append(where)
        # Redis' exception types may be caught anywhere; its clients live in the store.
        if isinstance(node, ast.Import):
            clients += [where for alias in node.names if _top(alias.name) == "redis"]
        if isinstance(node, ast.ImportFrom) and node.module and _top(node.module) == "redis" \
                and node.module != "redis.exceptions":
            clients.append(where)
    assert not keys, f"Redis keys spelled outside ringpool.store (use ringpool.store.keys): {keys}"
    assert not clients, f"Redis clients outside ringpool.store (use StateStore): {clients}"
