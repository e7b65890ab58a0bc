"""``teacher_corpus``: catalog + SIDs + train/valid samples -> alignment and reasoning corpora."""

from sapo_pipeline.pipelines.teacher_corpus.pipeline import create_pipeline

__all__ = ["create_pipeline"]
