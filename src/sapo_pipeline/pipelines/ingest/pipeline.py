"""Raw files -> parsed tables -> cleaned catalog and interactions -> split samples -> report."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.ingest import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.prepare_raw_source, "params:ingest", "raw_manifest", name="prepare_raw_source"),
            Node(nodes.read_raw_source, ["raw_manifest", "params:ingest"], "raw_source",
                 name="read_raw_source"),
            Node(nodes.clean_interactions, ["raw_source", "params:ingest"],
                 ["items", "interactions", "ingest_rejects", "clean_ledgers"],
                 name="clean_interactions"),
            Node(nodes.make_split_samples, ["interactions", "items", "raw_source", "params:ingest"],
                 "samples", name="make_split_samples"),
            Node(nodes.report_ingest,
                 ["raw_source", "clean_ledgers", "ingest_rejects", "items", "interactions",
                  "samples", "params:ingest"],
                 "ingest_report", name="report_ingest"),
        ],
        tags=["ingest"],
    )
