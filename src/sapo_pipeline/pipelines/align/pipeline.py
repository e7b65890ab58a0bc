"""Corpora + SID table -> tokenizer -> Stage-1 model, training log, valid SID accuracy."""

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.pipelines.align import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_align_tokenizer,
                ["alignment_corpus", "reasoning_corpus", "sid_table", "params:align"],
                "align_tokenizer",
                name="train_align_tokenizer",
            ),
            Node(
                nodes.train_align_model,
                ["alignment_corpus", "align_tokenizer", "sid_table", "sid_quantizer", "params:align"],
                ["align_model", "align_log"],
                name="train_align_model",
            ),
            Node(
                nodes.evaluate_align_model,
                ["align_model", "alignment_corpus", "sid_table", "params:align"],
                "align_eval",
                name="evaluate_align_model",
            ),
        ],
        tags=["align"],
    )
