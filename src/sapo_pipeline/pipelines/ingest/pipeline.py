"""Raw files -> parsed tables -> cleaned catalog and interactions -> split samples -> report."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.ingest import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.prepare_raw_source, "params:ingest", "raw_manifest", name="prepare_raw_source"),
            Node(
                nodes.read_raw_source,
                ["raw_manifest", "params:ingest"],
                {
                    "parsed_reviews": "parsed_reviews",
                    "parsed_items": "parsed_items",
                    "published_samples": "published_samples",
                    "read_rejects": "read_rejects",
                    "read_summary": "read_summary",
                },
                name="read_raw_source",
            ),
            Node(
                nodes.clean_interactions,
                ["parsed_reviews", "parsed_items", "published_samples", "read_rejects", "read_summary", "params:ingest"],
                ["items", "interactions", "ingest_rejects", "clean_ledgers"],
                name="clean_interactions",
            ),
            Node(
                nodes.make_split_samples,
                ["interactions", "items", "published_samples", "read_summary", "params:ingest"],
                "samples",
                name="make_split_samples",
            ),
            Node(
                nodes.report_ingest,
                ["read_summary", "clean_ledgers", "ingest_rejects", "items", "interactions", "samples", "params:ingest"],
                "ingest_report",
                name="report_ingest",
            ),
        ],
        tags=["ingest"],
    )
