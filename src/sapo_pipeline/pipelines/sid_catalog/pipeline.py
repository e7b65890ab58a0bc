"""Items -> text embeddings -> quantised, collision-free SIDs -> trie and report."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.sid_catalog import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.embed_items, ["items", "params:sid_catalog"], "item_embeddings", name="embed_items"),
            Node(
                nodes.assign_semantic_ids,
                ["items", "item_embeddings", "params:sid_catalog"],
                ["sid_table", "sid_quantizer", "sid_assignment"],
                name="assign_semantic_ids",
            ),
            Node(nodes.build_sid_trie, "sid_table", "sid_trie", name="build_sid_trie"),
            Node(
                nodes.report_sid_catalog,
                ["sid_table", "sid_assignment", "params:sid_catalog"],
                ["sid_report", "sid_catalog_figure"],
                name="report_sid_catalog",
            ),
        ],
        tags=["sid_catalog"],
    )
