"""The paper's ablations of SAPO: trained, evaluated and reported against SAPO (``ablations``)."""

from sapo_pipeline.pipelines.ablations.pipeline import COMPARED, create_pipeline

__all__ = ["COMPARED", "create_pipeline"]
