"""The stages in the paper's order; each is also runnable alone (``--pipelines=<stage>``).

A package of its own (not assembled in the registry) so that Kedro's selective discovery
imports it, and with it every stage, when ``--pipelines=sapo_full`` is asked for.
"""

from kedro.pipeline import Pipeline

from sapo_pipeline.pipelines import align, ingest, reason, sid_catalog, teacher_corpus

STAGES = (ingest, sid_catalog, teacher_corpus, align, reason)


def create_pipeline(**kwargs) -> Pipeline:
    return sum((stage.create_pipeline() for stage in STAGES), Pipeline([]))
