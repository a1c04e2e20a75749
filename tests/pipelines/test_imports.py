"""No import circle through the pipelines: every import, at module level or inside a function, read from the source."""

from __future__ import annotations

from tests.import_graph import cycles_through, import_graph


def test_no_import_circle_through_the_pipelines():
    graph = import_graph()
    assert "pixelprior.pipelines.pipeline_vq_prior" in graph["pixelprior.pipelines"]  # the graph is read
    assert "pixelprior.pipelines.loading" in graph["pixelprior.pipelines.base"]
    assert cycles_through(graph, "pixelprior.pipelines") == []
