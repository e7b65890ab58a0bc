"""Build the configured teacher backend (with its response cache for the LLM backends)."""

from __future__ import annotations

import logging

from sapo_pipeline.teacher.base import Teacher
from sapo_pipeline.teacher.cache import ResponseCache
from sapo_pipeline.teacher.config import TeacherConfig

log = logging.getLogger(__name__)


def make_teacher(cfg: TeacherConfig, seed: int = 0, log_every: int = 1000) -> Teacher:
    """The teacher named by ``cfg.backend``; call ``close()`` on it when done."""
    if cfg.backend == "rule":
        from sapo_pipeline.teacher.rule import RuleTeacher

        return RuleTeacher(cfg.rule, seed=seed)
    cache = ResponseCache(cfg.cache.path) if cfg.cache.enabled else None
    try:
        if cfg.backend == "openai":
            from sapo_pipeline.teacher.openai_backend import OpenAITeacher

            return OpenAITeacher(cfg.openai, cfg.requests, cache=cache, log_every=log_every)
        if cfg.backend == "hf":
            from sapo_pipeline.teacher.hf_backend import HFTeacher

            return HFTeacher(cfg.hf, cfg.requests, cache=cache, log_every=log_every)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    raise ValueError(f"unknown teacher backend {cfg.backend!r}")  # pragma: no cover
