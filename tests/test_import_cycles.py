"""No import cycles between lorakit's modules (read from the source, AST only).

An edge ``a -> b`` is an import in module ``a`` of module ``b``; importing ``x.y.z`` also
runs the ``__init__`` of packages ``x.y`` that are not ``a``'s own ancestors, so those are
edges too (``core/adapters -> core/methods/base`` runs every method file). Imports under
``if TYPE_CHECKING:`` never run and are left out. Module-level imports must form no cycle;
neither may they together with the imports inside functions (lazy imports are fine for
cost, never to hide a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "data", "vision", "speech", "apps")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["lorakit", *parts])


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for f in FOLDERS for p in (ROOT / f).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imported(path: Path, node: ast.AST, mods: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    me = module_name(path).split(".")
    pkg = me if path.name == "__init__.py" else me[:-1]
    base = node.module or ""
    if node.level:
        base = ".".join(pkg[: len(pkg) - (node.level - 1)] + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def import_statements(path: Path, mods: dict) -> list[tuple[str, bool, int]]:
    """``(imported module, inside a function, line)`` for every import statement."""
    out: list[tuple[str, bool, int]] = []

    def visit(body, in_function: bool) -> None:
        for node in body:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse, in_function)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                out.extend((m, in_function, node.lineno) for m in _imported(path, node, mods))
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child], in_function)

    visit(ast.parse(path.read_text()).body, False)
    return out


def _targets(importer: str, name: str, mods: dict) -> set[str]:
    """The lorakit modules that run when ``importer`` imports ``name``."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    if not name.startswith("lorakit."):
        return set()
    mine = importer.split(".")
    ancestors = {".".join(mine[:i]) for i in range(1, len(mine) + 1)}
    parts = name.split(".")
    packages = {".".join(parts[:i]) for i in range(2, len(parts))} & set(mods)
    return ({name} | packages) - ancestors - {importer}


def import_graph(with_functions: bool) -> dict[str, set[str]]:
    mods = all_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name, in_function, _ in import_statements(path, mods):
            if with_functions or not in_function:
                graph[m] |= _targets(m, name, mods)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_modules():
    found = cycles(import_graph(with_functions=False))
    assert not found, f"module-level import cycles: {found}"


def test_no_cycle_through_function_level_imports():
    found = cycles(import_graph(with_functions=True))
    assert not found, f"import cycles through imports inside functions: {found}"


def test_package_init_counts_as_imported():
    """``core/hosts`` importing ``core/methods/base`` would run every method file."""
    mods = all_modules()
    assert "lorakit.core.methods" in _targets("lorakit.core.hosts", "lorakit.core.methods.base", mods)
    assert "lorakit.core" not in _targets("lorakit.core.hosts", "lorakit.core.method", mods)


def test_lorakit_core_methods_is_the_package():
    import lorakit.core.methods as M

    assert "lora" in M.METHODS and M.METHODS["lora"].layer is M.LoRA
