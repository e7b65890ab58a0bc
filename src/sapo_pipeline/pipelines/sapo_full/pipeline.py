"""The stages in the paper's order; each is also runnable alone (``--pipelines=<stage>``).

A package of its own (not assembled in the registry) so that Kedro's selective discovery
imports it, and with it every stage, when ``--pipelines=sapo_full`` is asked for.
"""

from kedro.pipeline import Pipeline

from sapo_pipeline.pipelines import (
    align,
    baselines,
    evaluate,
    ingest,
    reason,
    rl,
    sid_catalog,
    teacher_corpus,
)

#: In the paper's order. rl holds one namespace per method (grpo, sapo, rere), all starting
#: from the stage-2 checkpoint; baselines fits popularity and SASRec on the same samples; evaluate
#: scores every model and baseline on the same rows and writes the comparison report.
STAGES = (ingest, sid_catalog, teacher_corpus, align, reason, rl, baselines, evaluate)


def create_pipeline(**kwargs) -> Pipeline:
    return sum((stage.create_pipeline() for stage in STAGES), Pipeline([]))
