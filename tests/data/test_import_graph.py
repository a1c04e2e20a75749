"""No import circles through the data package or the VQModel glue, lazy (function-level) imports included."""

from __future__ import annotations

import ast

from tests.import_graph import ROOT, cycles_through, import_graph


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "pixelprior.data.codes" in graph["pixelprior.data.datasets"]  # a top-level import
    assert "pixelprior.data.folder" in graph["pixelprior.data.datasets"]  # a function-level one


def test_no_import_circle_through_data_or_the_vqmodel_glue():
    graph = import_graph()
    assert cycles_through(graph, "pixelprior.data") == []  # data/codes.py <-> data/datasets.py was one
    assert graph["pixelprior.vqmodel"] == set()  # the glue imports no pixelprior module: anyone can import it
    assert any("pixelprior.vqmodel" in graph[name] for name in graph if name.startswith("pixelprior.pipelines."))


def test_the_vqmodel_glue_is_imported_from_its_one_home():
    import pixelprior.vqmodel as glue

    names = {name for name in vars(glue) if name.startswith(("vqvae_", "encode_images", "eval_mode", "load_vqmodel"))}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("data.codes"):
                assert not names & {alias.name for alias in node.names}, f"{path} imports the glue from data.codes"
