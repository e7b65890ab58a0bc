"""``align``: Stage 1, SID-language alignment (tokenizer, backbone, multi-task SFT, valid SID accuracy)."""

from sapo_pipeline.pipelines.align.pipeline import create_pipeline

__all__ = ["create_pipeline"]
