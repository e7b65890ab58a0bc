"""Every classic baseline declared once: its config class, how it is fitted and how it ranks.

A baseline namespace of ``parameters_baselines.yml`` holds ``baseline: {kind: <kind>, ...}``
with the fields of the kind's config class, so a variant (``sasrec_bce: {baseline: {kind:
sasrec, loss: bce}}``) is one YAML entry. A fitted baseline is a flat ``{name: array}`` state
(stored as safetensors, no pickle) plus a JSON-able report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.baselines import popularity
from sapo_pipeline.baselines.config import PopularityConfig, SASRecConfig
from sapo_pipeline.config_utils import from_tagged_dict

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class BaselineKind:
    """One baseline: ``fit(samples, n_items, cfg) -> (state, report)`` and
    ``rank(state, histories, cfg, k) -> ([n, k] items, [n, k] scores)``."""

    config: type
    fit: Callable[[pl.DataFrame, int, Any], tuple[State, dict[str, Any]]]
    rank: Callable[[State, list[list[int]], Any, int], tuple[np.ndarray, np.ndarray]]


def _fit_popularity(samples: pl.DataFrame, n_items: int, cfg: PopularityConfig
                    ) -> tuple[State, dict[str, Any]]:
    counts = popularity.item_counts(samples, n_items, cfg)
    top, top_counts = popularity.popularity_ranking(counts, min(10, n_items))
    return {"counts": counts}, {"count": cfg.count, "counted": int(counts.sum()),
                                "top10": top.tolist(), "top10_counts": top_counts.tolist()}


def _rank_popularity(state: State, histories: list[list[int]], cfg: PopularityConfig, k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    top, scores = popularity.popularity_ranking(np.asarray(state["counts"]), k)
    return np.tile(top, (len(histories), 1)), np.tile(scores, (len(histories), 1))


def _fit_sasrec(samples: pl.DataFrame, n_items: int, cfg: SASRecConfig
                ) -> tuple[State, dict[str, Any]]:
    from sapo_pipeline.baselines.sasrec import train_sasrec

    result = train_sasrec(samples, n_items, cfg)
    state = {k: v.detach().cpu().numpy() for k, v in result.model.state_dict().items()}
    return state, {**result.summary, "log": result.log}


def _rank_sasrec(state: State, histories: list[list[int]], cfg: SASRecConfig, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from sapo_pipeline.baselines.sasrec import SASRec, rank_items

    model = SASRec(int(state["items.weight"].shape[0]) - 1, cfg)
    model.load_state_dict({n: torch.from_numpy(np.array(a)) for n, a in state.items()})
    return rank_items(model, histories, k, cfg.eval_batch_size, cfg.mask_history)


KINDS: dict[str, BaselineKind] = {
    "popularity": BaselineKind(PopularityConfig, _fit_popularity, _rank_popularity),
    "sasrec": BaselineKind(SASRecConfig, _fit_sasrec, _rank_sasrec),
}


def baseline_config_from_dict(data: Mapping[str, Any], where: str = "baseline"
                              ) -> tuple[str, Any]:
    """``(kind, config)`` from a parameter dict holding ``kind`` and that kind's fields."""
    return from_tagged_dict(data, "kind", {k: v.config for k, v in KINDS.items()}, where)


@dataclass
class BaselineSection:
    """One namespace of ``parameters_baselines.yml`` (``popularity:``, ``sasrec:``, ...)."""

    baseline: Any = field(
        default=None, metadata={"help": "``kind`` (popularity | sasrec) + its config fields."})

    def __post_init__(self) -> None:
        if self.baseline is None:
            raise ValueError("baseline: required (a mapping with `kind` and its fields)")
        self.baseline = baseline_config_from_dict(self.baseline, "baseline")
