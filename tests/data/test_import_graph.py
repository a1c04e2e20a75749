"""No import circles through the data package or the VQModel glue, lazy (function-level) imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pixelprior

ROOT = Path(pixelprior.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("pixelprior", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the pixelprior modules it imports anywhere in its file (``from .x import y`` names ``.x``, and
    ``.x.y`` when that is a module)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles_through(graph: dict[str, set[str]], members: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module that hold one of ``members`` (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 and members & set(component):
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "pixelprior.data.codes" in graph["pixelprior.data.datasets"]  # a top-level import
    assert "pixelprior.data.folder" in graph["pixelprior.data.datasets"]  # a function-level one
    assert cycles_through({"a": {"b"}, "b": {"a"}, "c": {"a"}}, {"b"}) == [["a", "b"]]


def test_no_import_circle_through_data_or_the_vqmodel_glue():
    graph = import_graph()
    ours = {name for name in graph if name.startswith("pixelprior.data.")} | {"pixelprior.vqmodel"}
    assert cycles_through(graph, ours) == []
    assert graph["pixelprior.vqmodel"] == set()  # the glue imports no pixelprior module: anyone can import it
    assert any("pixelprior.vqmodel" in graph[name] for name in graph if name.startswith("pixelprior.pipelines."))


def test_the_vqmodel_glue_is_imported_from_its_one_home():
    import pixelprior.vqmodel as glue

    names = {name for name in vars(glue) if name.startswith(("vqvae_", "encode_images", "eval_mode", "load_vqmodel"))}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("data.codes"):
                assert not names & {alias.name for alias in node.names}, f"{path} imports the glue from data.codes"
