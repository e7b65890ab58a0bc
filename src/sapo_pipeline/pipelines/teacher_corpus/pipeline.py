"""SID hierarchy -> alignment corpus, reasoning corpus -> teacher report."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.teacher_corpus import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_hierarchy,
                ["items", "sid_table", "params:teacher_corpus"],
                "sid_hierarchy",
                name="build_hierarchy",
            ),
            Node(
                nodes.synthesize_alignment_corpus,
                ["items", "samples", "sid_table", "sid_hierarchy", "params:teacher_corpus"],
                ["alignment_corpus", "teacher_alignment_stats"],
                name="synthesize_alignment_corpus",
            ),
            Node(
                nodes.synthesize_reasoning_corpus,
                ["items", "samples", "sid_table", "sid_hierarchy", "params:teacher_corpus"],
                ["reasoning_corpus", "teacher_reasoning_stats"],
                name="synthesize_reasoning_corpus",
            ),
            Node(
                nodes.report_teacher_corpus,
                ["alignment_corpus", "reasoning_corpus", "teacher_alignment_stats",
                 "teacher_reasoning_stats", "params:teacher_corpus"],
                "teacher_report",
                name="report_teacher_corpus",
            ),
        ],
        tags=["teacher_corpus"],
    )
