"""Typed parameters of the classic baselines (``conf/*/parameters_baselines.yml``).

One top-level key per baseline namespace, as the RL methods have: ``popularity: {baseline: {kind:
popularity, ...}}``, ``sasrec: {baseline: {kind: sasrec, ...}}``; the nodes of namespace ``<name>``
read ``params:<name>.baseline`` (:mod:`sapo_pipeline.baselines.registry` builds the config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOSSES = ("ce", "bce")
DEVICES = ("auto", "cpu", "cuda")


def _check(owner: str, name: str, value: float, *, low: float = 0.0, inclusive: bool = False,
           high: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= low if inclusive else value > low)
    ok = ok and (high is None or value < high)
    if not ok:
        bound = f"{'>=' if inclusive else '>'} {low}" + (f" and < {high}" if high else "")
        raise ValueError(f"{owner}.{name}={value!r}: must be {bound}")


@dataclass
class PopularityConfig:
    """Most-popular items of the train split (a floor every trained model must clear)."""

    count: str = field(
        default="interactions",
        metadata={"help": "What is counted: 'interactions' (every item of the users' train "
                          "sequences, histories included) or 'targets' (train sample targets)."})

    def __post_init__(self) -> None:
        if self.count not in ("interactions", "targets"):
            raise ValueError(f"popularity.count={self.count!r}: expected interactions | targets")


@dataclass
class SASRecConfig:
    """SASRec (Kang & McAuley 2018) trained on every position of the users' train sequences."""

    hidden: int = field(default=64, metadata={"help": "Item / position embedding width."})
    blocks: int = field(default=2, metadata={"help": "Causal self-attention blocks."})
    heads: int = field(default=1, metadata={"help": "Attention heads per block."})
    dropout: float = field(default=0.5, metadata={"help": "Dropout on embeddings and blocks."})
    max_len: int = field(
        default=50, metadata={"help": "Items per training window (and learned positions); user "
                                      "sequences are cut into windows overlapping by one item."})
    positions: str = field(
        default="from_start",
        metadata={"help": "Learned positions counted from_start (the window's first item) or "
                          "from_end (back from its last item, as the original's left padding)."})
    loss: str = field(
        default="ce",
        metadata={"help": "ce: full-softmax cross-entropy over all items (the strong variant); "
                          "bce: the original paper's one sampled negative per position."})
    lr: float = field(default=1.0e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam (L2) weight decay."})
    batch_size: int = field(default=128, metadata={"help": "Training windows per step."})
    group_by_length: int | None = field(
        default=50,
        metadata={"help": "Batches of windows of similar length, each cut to its longest window "
                          "(the padding of short users costs nothing): the shuffled windows are "
                          "taken this many batches at a time, sorted by length, cut into batches, "
                          "and the batches shuffled (as Hugging Face's group_by_length); each "
                          "batch's loss is divided by the epoch's mean positions per batch, so "
                          "every position weighs as in random batches. null: random batches "
                          "(each cut to its longest window, the loss their mean)."})
    max_epochs: int = field(default=200, metadata={"help": "Upper bound on epochs."})
    eval_every: int = field(default=1, metadata={"help": "Valid NDCG@K every N epochs."})
    patience: int = field(
        default=10, metadata={"help": "Stop after this many evaluations without a better valid "
                                      "NDCG@K; the best epoch's weights are kept."})
    mask_history: bool = field(
        default=False,
        metadata={"help": "Score the row's history items -inf when ranking, in valid selection "
                          "and at prediction (RecBole's full-sort default). false keeps them, as "
                          "every other model under the published protocol; true suits data sets "
                          "without repeat purchases, where SASRec otherwise ranks the item just "
                          "bought first (tied embeddings): choose it on valid."})
    select_k: int = field(default=10, metadata={"help": "K of the valid NDCG@K used to select."})
    max_valid_rows: int | None = field(
        default=None, metadata={"help": "Seeded subset of valid rows for selection (null: all)."})
    eval_batch_size: int = field(default=512, metadata={"help": "Rows scored together."})
    seed: int = field(default=0, metadata={"help": "Initialisation, dropout and data order."})
    device: str = field(default="auto", metadata={"help": f"One of {DEVICES}."})
    num_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads while training (null: leave)."})
    progress_bar: bool = field(default=True, metadata={"help": "tqdm bar over epochs (tty only)."})

    def __post_init__(self) -> None:
        o = "sasrec"
        for name in ("hidden", "blocks", "heads", "batch_size", "max_epochs", "eval_every",
                     "patience", "select_k", "eval_batch_size", "lr"):
            _check(o, name, getattr(self, name))
        _check(o, "max_len", self.max_len, low=2, inclusive=True)
        _check(o, "dropout", self.dropout, inclusive=True, high=1.0)
        _check(o, "weight_decay", self.weight_decay, inclusive=True)
        if self.hidden % self.heads:
            raise ValueError(f"{o}.hidden={self.hidden} must be divisible by heads={self.heads}")
        if self.positions not in ("from_start", "from_end"):
            raise ValueError(f"{o}.positions={self.positions!r}: expected from_start | from_end")
        if self.loss not in LOSSES:
            raise ValueError(f"{o}.loss={self.loss!r}: expected one of {list(LOSSES)}")
        if self.device not in DEVICES:
            raise ValueError(f"{o}.device={self.device!r}: expected one of {list(DEVICES)}")
        if self.group_by_length is not None:
            _check(o, "group_by_length", self.group_by_length)
        if self.max_valid_rows is not None:
            _check(o, "max_valid_rows", self.max_valid_rows)
        if self.num_threads is not None:
            _check(o, "num_threads", self.num_threads)

