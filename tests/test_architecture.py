"""The instrumentation's layering, read from its source: imports run one way, with no circle, and the call
lifecycle knows no provider."""

from __future__ import annotations

import ast
from pathlib import Path

import llmtally.instrumentation

ROOT = Path(llmtally.instrumentation.__file__).parent
PACKAGE = "llmtally.instrumentation"
# The modules every call goes through, which must know no provider API (only the endpoint interface).
LIFECYCLE = {"call", "reader", "runtime", "instrumentor", "telemetry", "budgets", "keys", "transport.streams"}
SDK_HOOKS = {"openai", "anthropic", "google_genai", "botocore", "http", "sdk"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every instrumentation module `name` imports, at the top or inside functions, type-only imports included."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    if name == "":
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith(PACKAGE):
                stem = node.module[len(PACKAGE) :].lstrip(".")
            else:
                continue
            targets = [f"{stem}.{alias.name}".lstrip(".") for alias in node.names] + [stem]
        elif isinstance(node, ast.Import):
            targets = [a.name[len(PACKAGE) :].lstrip(".") for a in node.names if a.name.startswith(PACKAGE)]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
                break
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == "" or (node.startswith(nxt + ".") and nxt in graph):
                continue  # a module's own package (its __init__) runs first in any case
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_reader_sees_the_real_imports():
    graph = _graph()
    assert "apis.base" in graph["call"] and "reader" in graph["call"]
    assert "runtime" in graph["transport.httpx"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check can fail


def test_the_instrumentation_has_no_import_circle():
    assert _cycle(_graph()) is None


def test_the_lifecycle_knows_no_provider_api():
    graph = _graph()
    for name in LIFECYCLE:
        provider_apis = {m for m in graph[name] if m.startswith("apis.") and m != "apis.base"}
        assert not provider_apis, (name, provider_apis)
        hooks = {m for m in graph[name] if m.split(".")[0] in SDK_HOOKS}
        assert not hooks, (name, hooks)


def test_provider_api_modules_stay_below_the_lifecycle():
    graph = _graph()
    for name, imported in graph.items():
        if name.startswith("apis"):
            upward = {m for m in imported if not m.startswith("apis") and m not in ("semconv", "usage", "wire")}
            assert not upward, (name, upward)
