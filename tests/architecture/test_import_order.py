"""The package is layered by pipeline stage (docs/architecture.md): a module imports only from its own stage or
lower ones, and no two modules import each other, directly or round a loop.

Read from the source with ast (nothing is imported), so the test holds for code paths no other test runs:
function-level (lazy) imports count too. The few deliberate exceptions are listed below with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "auditq"

#: stage -> rank, low to high; a module may import a stage of its own rank or lower. The root's light modules
#: (errors, registry, interrupt) are rank 0; `entry` and `__main__` are the top (they start the CLI).
STAGES = {
    "": 0, "errors": 0, "registry": 0, "interrupt": 0, "safe_parse": 0, "regular_file": 0, "limits": 0, "schema": 0,
    "result": 1,        # the report's data types
    "suite": 2,         # probe suites: records, settings
    "checkpoint": 3,    # files, headers, loading, upcast, restore, integrity, placement
    "backends": 4,      # scoring engines (torch, llama.cpp)
    "probes": 5,        # what is measured on a model
    "formats": 6,       # deployment forms and attacks applied to a checkpoint
    "unlearning": 7,    # the unlearning losses and loop (demo and remediate train with them)
    "cache": 8,         # the result cache between planning and execution
    "verdict": 9,       # scoring, statistics, checks, thresholds, waivers
    "audit": 10,        # request, plan, execute, assemble, evidence
    "report": 11,       # writers, --out
    "validate": 12,     # the light, torch-free validation stage
    "remediate": 13,
    "demo": 13,
    "sweep": 13,        # many candidates against one base: runs the audit core, writes reports
    "cli": 14,          # one module per command
    "entry": 15, "__main__": 15,
}
#: siblings of one rank that must not import each other
SIBLINGS_APART = {frozenset({"remediate", "demo"})}

#: deliberate imports that break the rules, with why (none today)
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _targets(module: str, path: Path, node: ast.AST, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "auditq"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != "auditq":
        return []
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]


def _with_parents(module: str, target: str, known: set[str]) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first: those are imported too, unless `module` is
    inside them (its own packages are already initialising)."""
    out = {target}
    parts = target.split(".")
    for i in range(2, len(parts)):
        parent = ".".join(parts[:i])
        if parent in known and not module.startswith(parent + "."):
            out.add(parent)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the auditq modules it imports anywhere in its body (module level or inside functions)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {t for node in ast.walk(tree) for target in _targets(name, path, node, known)
                       for t in _with_parents(name, target, known) if t in known and t != name}
    return graph


def stage(module: str) -> str:
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted(m for m in _modules() if stage(m) not in STAGES)
    assert not unknown, f"add these to STAGES in this test and to docs/architecture.md: {unknown}"


def test_no_import_from_a_higher_stage():
    upward = []
    for module, targets in import_graph().items():
        for target in targets:
            here, there = stage(module), stage(target)
            apart = frozenset({here, there}) in SIBLINGS_APART
            if (STAGES[there] > STAGES[here] or apart) and (module, target) not in ALLOWED:
                upward.append(f"{module} ({here}) -> {target} ({there})")
    assert not upward, "imports from a higher stage:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_edges_dropped(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ importing its own submodules (a registry listing them) is not a cycle with them."""
    out = {}
    for module, targets in graph.items():
        out[module] = {t for t in targets if not t.startswith(module + ".")}
    return out


def test_no_import_cycle():
    cycles = _cycles(_package_edges_dropped(import_graph()))
    assert not cycles, "modules that import each other (directly or round a loop): " + "; ".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["auditq.checkpoint.load", "auditq.formats.base", "auditq.audit.pipeline"])
def test_graph_sees_imports(module):
    """The graph is not empty by accident: these modules import other auditq modules."""
    assert import_graph()[module]
