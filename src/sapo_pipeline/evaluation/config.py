"""Typed parameters of the evaluation (``conf/*/parameters_evaluate.yml``, key ``evaluate``).

* :class:`DecodingConfig` -- beam search used to produce predictions.
* :class:`MetricsConfig` -- cut-offs and the history-exclusion convention (METHOD.md §4).
* :class:`StatsConfig` -- bootstrap confidence intervals and paired tests.
* :class:`ReportConfig` -- what the comparison report names in its header and which tests it runs.
* :class:`EvaluateConfig` -- all of the above plus the evaluated rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.config_utils import check_positive
from sapo_pipeline.evaluation.metrics import RANK_METRICS

DEVICES = ("auto", "cpu", "cuda")
PUBLISHED_CHOICES = ("auto", "none", "office", "industrial")




@dataclass
class DecodingConfig:
    """Trie-constrained beam search over the catalog's SIDs (METHOD.md §4)."""

    num_beams: int = field(default=10, metadata={"help": "Beams B; every sample gets B ranked SIDs."})
    max_think_tokens: int = field(
        default=48,
        metadata={"help": "Reasoning models: free tokens of one thinking block before </think> "
                          "is forced (greedy blocks)."})
    batch_size: int = field(default=64, metadata={"help": "Prompts decoded together (x B beam rows; "
                                                       "their prompts share one KV copy). 64 "
                                                       "measured 9-17% faster per prompt than 32 "
                                                       "on the 2-core CPU (two trained models)."})
    max_length: int = field(
        default=768,
        metadata={"help": "Prompt + response token budget (as in training); prompts are cut "
                          "from the left to what the response leaves."})
    prompt_separator: str = field(
        default=" ", metadata={"help": "Text between prompt and response, as in training."})
    device: str = field(default="auto", metadata={"help": f"One of {DEVICES} (auto: cuda if any)."})
    exclude_history: bool = field(
        default=False,
        metadata={"help": "Generative models never return a SID of the row's history items: the "
                          "beams are the best B of the rest (the generative counterpart of "
                          "sasrec.baseline.mask_history, for data sets without repeat purchases; "
                          "the report notes must say so). Off: the published protocol."})
    num_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads during decoding (null: leave)."})

    def __post_init__(self) -> None:
        o = "evaluate.decoding"
        for name in ("num_beams", "max_think_tokens", "batch_size", "max_length"):
            check_positive(o, name, getattr(self, name))
        check_positive(o, "num_threads", self.num_threads, allow_none=True)
        if self.device not in DEVICES:
            raise ValueError(f"{o}.device={self.device!r}: expected one of {list(DEVICES)}")


@dataclass
class MetricsConfig:
    """Ranking metrics and the conventions they follow."""

    ks: tuple[int, ...] = field(
        default=(1, 3, 5, 10), metadata={"help": "Cut-offs K of Recall@K and NDCG@K."})
    exclude_history: bool = field(
        default=False,
        metadata={"help": "false (published protocol): history items stay in the ranking. true: "
                          "beams whose SID is a history item's SID are dropped, the rest re-ranked, "
                          "then cut at K. Every report states which."})

    def __post_init__(self) -> None:
        self.ks = tuple(self.ks)
        if not self.ks:
            raise ValueError("evaluate.metrics.ks: give at least one cut-off")
        for k in self.ks:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ValueError(f"evaluate.metrics.ks: cut-offs must be integers >= 1, got {k!r}")
        if len(set(self.ks)) != len(self.ks):
            raise ValueError(f"evaluate.metrics.ks: duplicates in {list(self.ks)}")
        self.ks = tuple(sorted(self.ks))


@dataclass
class StatsConfig:
    """Bootstrap confidence intervals over test rows and paired tests between methods."""

    confidence: float = field(default=0.95, metadata={"help": "Confidence level of every interval."})
    n_bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples B."})
    n_permutations: int = field(
        default=10000,
        metadata={"help": "Monte-Carlo sign flips of the paired permutation test (used when the "
                          "exact test would need more than 2**exact_max_rows flips)."})
    exact_max_rows: int = field(
        default=16,
        metadata={"help": "Up to this many rows with a non-zero difference, the sign-flip test "
                          "enumerates all 2**n sign patterns (exact p-value)."})
    seed: int = field(default=0, metadata={"help": "Seeds every resample (deterministic)."})

    def __post_init__(self) -> None:
        o = "evaluate.stats"
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"{o}.confidence={self.confidence!r}: must be in [0.5, 1)")
        check_positive(o, "n_bootstrap", self.n_bootstrap)
        check_positive(o, "n_permutations", self.n_permutations)
        check_positive(o, "exact_max_rows", self.exact_max_rows, allow_zero=True)
        if self.exact_max_rows > 22:
            raise ValueError(f"{o}.exact_max_rows={self.exact_max_rows}: at most 22 (2**22 flips)")
        check_positive(o, "seed", self.seed, allow_zero=True)


@dataclass
class ReportConfig:
    """The comparison report: header facts, paired tests, published context."""

    dataset: str = field(
        default="synthetic",
        metadata={"help": "Data set name shown in the header (office / industrial also select the "
                          "published reference table)."})
    notes: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Free-text notes for the header, e.g. 'train split reconstructed from "
                          "published histories'."})
    reference_method: str = field(
        default="sapo",
        metadata={"help": "Method tested (paired) against every other method present."})
    paired_metrics: tuple[str, ...] = field(
        default=("ndcg@10", "recall@10"),
        metadata={"help": "Per-row metrics of the paired tests, e.g. ndcg@10."})
    start_pairs: Any = field(
        default="auto",
        metadata={"help": "Further paired tests: auto (every evaluated RL namespace, ablations "
                          "included, against its Stage-2 start sft_reasoning) or a list of "
                          "[method, other] pairs (pairs of unevaluated methods are skipped)."})
    plot_k: int = field(default=10, metadata={"help": "K of the NDCG@K / Recall@K bar chart."})
    published_reference: str = field(
        default="auto",
        metadata={"help": f"One of {PUBLISHED_CHOICES}: which METHOD.md §5 table to add (context "
                          "only, a separate table); auto: from the data set name."})
    cost_reference: str = field(
        default="grpo",
        metadata={"help": "RL method the training cost per step is compared against (its "
                          "overhead ratios are 1); when it is not among the evaluated RL methods "
                          "the first of them is used, with a warning."})
    cost_skip_steps: int = field(
        default=1,
        metadata={"help": "RL steps left out of the cost medians at the start (warm-up)."})
    cost_goal: float = field(
        default=0.05,
        metadata={"help": "Acceptable relative overhead per response token against "
                          "cost_reference (0.05: 5%)."})

    def __post_init__(self) -> None:
        o = "evaluate.report"
        if self.cost_skip_steps < 0:
            raise ValueError(f"{o}.cost_skip_steps={self.cost_skip_steps}: must be >= 0")
        if not 0 <= self.cost_goal < 10:
            raise ValueError(f"{o}.cost_goal={self.cost_goal}: must be in [0, 10)")
        if not str(self.dataset).strip():
            raise ValueError(f"{o}.dataset: must be a non-empty name")
        self.notes = tuple(str(n) for n in self.notes)
        self.paired_metrics = tuple(self.paired_metrics)
        if self.start_pairs != "auto":
            if isinstance(self.start_pairs, str):
                raise ValueError(f"{o}.start_pairs={self.start_pairs!r}: 'auto' or a list of "
                                 f"[method, other] pairs")
            self.start_pairs = tuple(tuple(p) for p in self.start_pairs)
        if self.start_pairs != "auto" and not all(
                len(p) == 2 and all(isinstance(x, str) and x for x in p) for p in self.start_pairs):
            raise ValueError(f"{o}.start_pairs: a list of [method, other] pairs, got "
                             f"{self.start_pairs!r}")
        for m in self.paired_metrics:
            family, _, k = str(m).partition("@")
            if family not in RANK_METRICS or not k.isdigit() or int(k) < 1:
                raise ValueError(f"{o}.paired_metrics: {m!r} is not <metric>@<K> with a metric "
                                 f"of {list(RANK_METRICS)} (e.g. ndcg@10)")
        check_positive(o, "plot_k", self.plot_k)
        if self.published_reference not in PUBLISHED_CHOICES:
            raise ValueError(f"{o}.published_reference={self.published_reference!r}: expected one "
                             f"of {list(PUBLISHED_CHOICES)}")


@dataclass
class EvaluateConfig:
    """Everything the ``evaluate`` pipeline reads from ``params:evaluate``."""

    max_samples: int | None = field(
        default=1500,
        metadata={"help": "Evaluate a seeded subset of at most this many rows per split (the same "
                          "rows for every model; the report states it). null: every row."})
    max_samples_per_split: dict[str, int | None] = field(
        default_factory=lambda: {"valid": 100},
        metadata={"help": "Tighter caps for some splits, on top of max_samples (the smaller "
                          "wins), e.g. {valid: 100}: valid only serves model selection, test is "
                          "the reported split."})
    seed: int = field(default=0, metadata={"help": "Seeds the row subset (max_samples)."})
    decoding: DecodingConfig = field(default_factory=DecodingConfig,
                                     metadata={"help": "Beam search settings."})
    metrics: MetricsConfig = field(default_factory=MetricsConfig,
                                   metadata={"help": "Metric cut-offs and conventions."})
    stats: StatsConfig = field(default_factory=StatsConfig,
                               metadata={"help": "Confidence intervals and paired tests."})
    report: ReportConfig = field(default_factory=ReportConfig,
                                 metadata={"help": "Comparison report settings."})

    def rows_for(self, split: str) -> int | None:
        """The row cap of ``split``: the smaller of ``max_samples`` and its own cap (None: none)."""
        caps = [c for c in (self.max_samples, self.max_samples_per_split.get(split))
                if c is not None]
        return min(caps) if caps else None

    def __post_init__(self) -> None:
        check_positive("evaluate", "max_samples", self.max_samples, allow_none=True)
        self.max_samples_per_split = dict(self.max_samples_per_split or {})
        for split, n in self.max_samples_per_split.items():
            if split not in ("train", "valid", "test"):
                raise ValueError(f"evaluate.max_samples_per_split: unknown split {split!r} "
                                 f"(train / valid / test)")
            check_positive("evaluate.max_samples_per_split", split, n, allow_none=True)
        check_positive("evaluate", "seed", self.seed, allow_zero=True)
        missing = [m for m in self.report.paired_metrics
                   if int(m.partition("@")[2]) not in self.metrics.ks]
        if missing:
            raise ValueError(f"evaluate.report.paired_metrics {missing}: K not in "
                             f"evaluate.metrics.ks={list(self.metrics.ks)}")
        if self.report.plot_k not in self.metrics.ks:
            raise ValueError(f"evaluate.report.plot_k={self.report.plot_k}: not in "
                             f"evaluate.metrics.ks={list(self.metrics.ks)}")
