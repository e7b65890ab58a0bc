"""The teacher that writes the training corpora (no Kedro here).

* ``layout``: the step-aligned response layout ``<think> z1 </think><a_x>...`` (render / parse).
* ``prompts``: the model-facing prompt templates of every task.
* ``hierarchy``: what the items under each SID prefix share, in words.
* ``base``: the teacher interface; ``rule`` (offline, default), ``openai_backend``,
  ``hf_backend`` (LLM teachers sharing ``llm``), ``cache`` (sqlite response cache),
  ``factory.make_teacher``.
* ``corpus``: the alignment and reasoning corpora; ``report``: their report.
* ``config``: ``TeacherCorpusConfig``, the typed ``teacher_corpus`` parameters.

Only the light-weight layout API is re-exported (importing it pulls in no model code).
"""

from sapo_pipeline.teacher.layout import (
    THINK_CLOSE,
    THINK_OPEN,
    LayoutError,
    clean_block,
    parse_steps,
    render_steps,
)

__all__ = ["THINK_CLOSE", "THINK_OPEN", "LayoutError", "clean_block", "parse_steps",
           "render_steps"]
