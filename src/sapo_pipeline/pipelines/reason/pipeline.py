"""Stage-1 model + reasoning corpus -> Stage-2 model, training log, valid SID accuracy."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.reason import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_reason_model,
                ["align_model", "reasoning_corpus", "alignment_corpus", "params:reason"],
                ["reason_model", "reason_log"],
                name="train_reason_model",
            ),
            Node(
                nodes.evaluate_reason_model,
                ["reason_model", "reasoning_corpus", "sid_table", "params:reason"],
                "reason_eval",
                name="evaluate_reason_model",
            ),
        ],
        tags=["reason"],
    )
