"""Typed parameters of the ``teacher_corpus`` pipeline (conf/base/parameters_teacher_corpus.yml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.config_utils import check_positive_fields
from sapo_pipeline.teacher.hierarchy import HierarchyConfig
from sapo_pipeline.teacher.prompts import (
    ALIGNMENT_TASKS,
    ALL_POSITION_TASKS,
    DEFAULT_ALIGNMENT_TASKS,
    PromptConfig,
    template_fields,
)

BACKENDS = ("rule", "openai", "hf")
SPLITS = ("train", "valid")

DEFAULT_SYSTEM = ("You are a concise shopping analyst. You explain purchases in plain English, "
                  "in short sentences, and never mention IDs or codes.")
DEFAULT_DESCRIBE = ("Write a 2-3 sentence description of this product for a shopper.\n"
                    "Title: {title}\nBrand: {brand}\nCategory: {categories}\n"
                    "Details: {description}\nAnswer with the description only.")
DEFAULT_NARRATE = ("A customer bought these products, oldest first:\n{history}\n"
                   "In 2-3 sentences, describe this customer's interests and how they are "
                   "changing. Answer with the description only.")
DEFAULT_REASON = (
    "A customer bought these products, oldest first:\n{history}\n"
    "Their next purchase was: {target}\n"
    "Products are organised in {levels} levels, from broad to specific. The next purchase "
    "belongs to:\n{levels_text}\n"
    "Explain in exactly {levels} steps how the purchase history leads to the next purchase: "
    "step 1 reasons toward the level-1 group, each next step narrows down to the next level, "
    "and step {levels} arrives at the product itself. Write 1-3 sentences per step and never "
    "mention IDs or codes. Answer in exactly this format:\n{format}"
)
REQUEST_FIELDS = {
    "describe_item": {"title", "brand", "categories", "description"},
    "narrate_user": {"history"},
    "reason_steps": {"history", "target", "levels", "levels_text", "format"},
}




RULE_STYLES = ("verbose", "concise", "evidence")


@dataclass
class RuleTeacherConfig:
    """The offline templated teacher."""

    style: str = field(
        default="concise",
        metadata={"help": "Reasoning blocks: verbose (1-2 sentences per step, citing the history "
                          "and the group's words) | concise (one short clause per step: the "
                          "group, the sub-type, the item; ~4x fewer think tokens to train on "
                          "and to decode) | evidence (one clause per step stating what the "
                          "history shows under the SID prefix chosen so far -- how many items, "
                          "the latest -- never the answer, so a greedily decoded block does not "
                          "commit every beam to one group)."})
    max_history_mentions: int = field(
        default=3, metadata={"help": "History titles a reasoning block may cite."})
    max_title_chars: int = field(
        default=60, metadata={"help": "Titles cited in teacher text are cut to this length."})
    max_description_chars: int = field(
        default=240, metadata={"help": "Source description kept in an item description."})

    def __post_init__(self) -> None:
        check_positive_fields(self, "max_history_mentions", "max_title_chars", "max_description_chars")
        if self.style not in RULE_STYLES:
            raise ValueError(f"style={self.style!r}: expected one of {list(RULE_STYLES)}")


@dataclass
class TeacherRequestConfig:
    """What an LLM teacher (openai / hf) is asked, and what it may answer."""

    system: str = field(default=DEFAULT_SYSTEM, metadata={"help": "System message."})
    describe_item: str = field(
        default=DEFAULT_DESCRIBE,
        metadata={"help": "Item description request; fields {title} {brand} {categories} "
                          "{description}."})
    narrate_user: str = field(
        default=DEFAULT_NARRATE, metadata={"help": "User narrative request; field {history}."})
    reason_steps: str = field(
        default=DEFAULT_REASON,
        metadata={"help": "Reasoning request; fields {history} {target} {levels} {levels_text} "
                          "{format}. The answer must be 'Step 1: ...' lines, one per level."})
    max_history_items: int = field(
        default=10, metadata={"help": "Last N history items shown to the teacher."})
    max_input_description_chars: int = field(
        default=500, metadata={"help": "Item descriptions shown to the teacher are cut to this."})
    max_block_chars: int = field(
        default=600, metadata={"help": "A reasoning step longer than this rejects the answer."})
    max_text_chars: int = field(
        default=800,
        metadata={"help": "Descriptions / narratives are cut to this at a sentence end "
                          "(counted as 'truncated')."})

    def __post_init__(self) -> None:
        for name, allowed in REQUEST_FIELDS.items():
            extra = template_fields(getattr(self, name)) - allowed
            if extra:
                raise ValueError(f"{name}: field(s) {sorted(extra)} not allowed; use {sorted(allowed)}")
        check_positive_fields(self, "max_history_items", "max_input_description_chars", "max_block_chars",
                  "max_text_chars")


@dataclass
class OpenAIConfig:
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, ...)."""

    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "API root; requests go to <base_url>/chat/completions."})
    model: str = field(default="", metadata={"help": "Model name sent in each request."})
    api_key_env: str | None = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key (sent as a Bearer header, "
                          "never logged). null: no key (local servers)."})
    concurrency: int = field(default=4, metadata={"help": "Requests in flight at once."})
    timeout_s: float = field(default=60.0, metadata={"help": "Per-request timeout (seconds)."})
    max_retries: int = field(
        default=5, metadata={"help": "Retries after a 429 / 5xx / timeout / connection error."})
    backoff_base_s: float = field(
        default=1.0, metadata={"help": "Backoff before retry n is base * 2**n (plus jitter)."})
    backoff_max_s: float = field(default=60.0, metadata={"help": "Cap on one backoff."})
    jitter: float = field(
        default=0.5, metadata={"help": "Backoff is multiplied by 1 + jitter * U(0, 1)."})
    max_retry_after_s: float = field(
        default=120.0, metadata={"help": "Cap on an honoured Retry-After header (seconds)."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature."})
    max_tokens: int = field(default=512, metadata={"help": "Completion token limit."})
    seed: int | None = field(
        default=None, metadata={"help": "Sent as 'seed' when set (servers that support it)."})
    extra_body: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Extra JSON fields merged into each request."})

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        check_positive_fields(self, "concurrency", "timeout_s", "max_tokens")
        check_positive_fields(self, "max_retries", "backoff_base_s", "backoff_max_s", "jitter",
                  "max_retry_after_s", "temperature", allow_zero=True)
        if self.api_key_env is not None and not self.api_key_env.strip():
            raise ValueError("api_key_env must be a variable name or null")


@dataclass
class HFConfig:
    """A local causal LM directory loaded with transformers (never downloads)."""

    model_path: str = field(
        default="", metadata={"help": "Local model directory (relative to the project root)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Generation length limit."})
    batch_size: int = field(default=4, metadata={"help": "Prompts generated together."})
    dtype: str = field(default="float32", metadata={"help": "float32 | bfloat16 | float16."})
    use_chat_template: bool = field(
        default=True,
        metadata={"help": "Use the tokenizer's chat template when it has one (else plain "
                          "'system\\n\\nuser' text)."})
    torch_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads for generation (null: leave)."})

    def __post_init__(self) -> None:
        check_positive_fields(self, "max_new_tokens", "batch_size")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32 | bfloat16 | float16, got {self.dtype!r}")
        if self.torch_threads is not None:
            check_positive_fields(self, "torch_threads")


@dataclass
class CacheConfig:
    """Persistent response cache of the LLM backends (the rule teacher needs none)."""

    enabled: bool = field(default=True, metadata={"help": "Cache raw teacher responses."})
    path: str = field(
        default="data/02_intermediate/teacher_cache.sqlite",
        metadata={"help": "sqlite file (relative to the project root)."})


@dataclass
class TeacherConfig:
    """Which teacher writes descriptions, narratives and reasoning, and how."""

    backend: str = field(default="rule", metadata={"help": f"One of {BACKENDS}."})
    rule: RuleTeacherConfig = field(default_factory=RuleTeacherConfig,
                                    metadata={"help": "Rule backend settings."})
    openai: OpenAIConfig = field(default_factory=OpenAIConfig,
                                 metadata={"help": "OpenAI-compatible backend settings."})
    hf: HFConfig = field(default_factory=HFConfig,
                         metadata={"help": "Local transformers backend settings."})
    requests: TeacherRequestConfig = field(
        default_factory=TeacherRequestConfig,
        metadata={"help": "Requests sent to the LLM backends."})
    cache: CacheConfig = field(default_factory=CacheConfig,
                               metadata={"help": "Response cache of the LLM backends."})

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} unknown; use one of {BACKENDS}")
        if self.backend == "openai" and not self.openai.model:
            raise ValueError("backend 'openai' needs openai.model")
        if self.backend == "hf" and not self.hf.model_path:
            raise ValueError("backend 'hf' needs hf.model_path")


@dataclass
class AlignmentConfig:
    """Which stage-1 tasks to build and how many examples each (caps keep CPU runs small)."""

    tasks: tuple[str, ...] = field(
        default=DEFAULT_ALIGNMENT_TASKS,
        metadata={"help": f"Tasks to build, among {ALIGNMENT_TASKS}."})
    max_train_per_task: int = field(
        default=1000, metadata={"help": "Train examples per task (0: none); sid_sequence "
                                        "keeps every window unless caps names it."})
    max_valid_per_task: int = field(
        default=200, metadata={"help": "Valid examples per task (0: none)."})
    caps: dict[str, dict[str, int]] = field(
        default_factory=dict,
        metadata={"help": "Per-task overrides, e.g. {sid_to_description: {train: 500}}. "
                          "sid_sequence's train rows are every window unless capped here."})
    sequence_window: int = field(
        default=11,
        metadata={"help": "sid_sequence: items per training window (context + targets); 11 = "
                          "the default max_history of 10 plus the next item."})
    sequence_stride: int | None = field(
        default=None,
        metadata={"help": "sid_sequence: items between window starts (null: window - 1, windows "
                          "overlap by one item). Each transition is a target exactly once; a "
                          "smaller stride gives later targets more context."})

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        unknown = sorted(set(self.tasks) - set(ALIGNMENT_TASKS))
        if unknown:
            raise ValueError(f"tasks: unknown {unknown}; use some of {list(ALIGNMENT_TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: duplicates in {list(self.tasks)}")
        check_positive_fields(self, "max_train_per_task", "max_valid_per_task", allow_zero=True)
        if self.sequence_window < 2:
            raise ValueError(f"sequence_window must be >= 2, got {self.sequence_window}")
        if self.sequence_stride is not None and not 1 <= self.sequence_stride < \
                self.sequence_window:
            raise ValueError(f"sequence_stride must be in [1, sequence_window - 1] or null, got "
                             f"{self.sequence_stride}")
        for task, caps in self.caps.items():
            if task not in ALIGNMENT_TASKS:
                raise ValueError(f"caps: unknown task {task!r}")
            if not isinstance(caps, dict) or set(caps) - set(SPLITS):
                raise ValueError(f"caps.{task}: expected a mapping with keys among {SPLITS}")
            for split, n in caps.items():
                if not isinstance(n, int) or n < 0:
                    raise ValueError(f"caps.{task}.{split}: must be an integer >= 0, got {n!r}")

    def cap(self, task: str, split: str) -> int:
        default = self.max_train_per_task if split == "train" else self.max_valid_per_task
        if task in ALL_POSITION_TASKS and split == "train":
            default = 2**62  # every window: one pass covers every train transition
        return int(self.caps.get(task, {}).get(split, default))


@dataclass
class ReasoningConfig:
    """The stage-2 reasoning corpus (step-aligned layout)."""

    enabled: bool = field(default=True, metadata={"help": "Build the reasoning corpus."})
    max_train: int = field(default=10000, metadata={"help": "Train samples explained (cap)."})
    max_valid: int = field(default=300, metadata={"help": "Valid samples explained (cap)."})

    def __post_init__(self) -> None:
        check_positive_fields(self, "max_train", "max_valid", allow_zero=True)


@dataclass
class TeacherCorpusConfig:
    """Everything the ``teacher_corpus`` pipeline reads from ``params:teacher_corpus``."""

    seed: int = field(default=0, metadata={"help": "Seeds sample selection and phrasing."})
    prompts: PromptConfig = field(default_factory=PromptConfig,
                                  metadata={"help": "Model-facing prompt templates."})
    hierarchy: HierarchyConfig = field(default_factory=HierarchyConfig,
                                       metadata={"help": "Prefix summaries."})
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig,
                                       metadata={"help": "Stage-1 alignment corpus."})
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig,
                                       metadata={"help": "Stage-2 reasoning corpus."})
    teacher: TeacherConfig = field(default_factory=TeacherConfig,
                                   metadata={"help": "Teacher backend."})
    log_every: int = field(default=1000, metadata={"help": "Progress log interval (requests)."})

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_positive_fields(self, "log_every")
