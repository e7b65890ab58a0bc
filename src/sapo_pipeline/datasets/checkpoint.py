"""Kedro dataset for a Hugging Face checkpoint directory (model + tokenizer + extra JSON).

Saves and loads a :class:`sapo_pipeline.model.Checkpoint` (``model``, ``tokenizer``, ``extra``).

Directory layout written by :meth:`HFCheckpointDataset.save`::

    <filepath>/
      config.json, model.safetensors, generation_config.json   plain model (save_pretrained)
      -- or, for a peft model --
      adapter_config.json, adapter_model.safetensors             the adapter (PeftModel.save_pretrained)
      base_model/config.json, base_model/model.safetensors       the base model it sits on (resized
                                                                 embeddings, adapters unloaded), unless
                                                                 save_args.save_base_model is false
      tokenizer.json, tokenizer_config.json, ...                 tokenizer.save_pretrained
      extra.json                                                 Checkpoint.extra (sorted keys)

The save is atomic: everything is written into a temporary sibling directory
``.<name>.tmp-<random>``, which is then renamed into place; an existing checkpoint is first renamed
aside to ``.<name>.old-<random>`` and deleted only after the new one is in place. A failure while
writing leaves the previous checkpoint untouched and no partial directory at the target. Local
filesystem only (atomic renames).

Everything loads offline (``local_files_only=True``); the tokenizer through
:func:`sapo_pipeline.model.tokenizer.load_tokenizer` (see there why not ``AutoTokenizer``).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from kedro.io import AbstractDataset, DatasetError
from transformers import AutoModelForCausalLM

from sapo_pipeline.io_utils import write_directory_atomically
from sapo_pipeline.model.backbone import Checkpoint
from sapo_pipeline.model.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

EXTRA_FILE = "extra.json"
BASE_DIR = "base_model"
ADAPTER_CONFIG = "adapter_config.json"


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a project dependency
        return False
    return isinstance(model, PeftModel)


class HFCheckpointDataset(AbstractDataset[Checkpoint, Checkpoint]):
    """A directory holding a causal LM (plain or peft), its tokenizer and ``extra`` metadata.

    Example catalog entry::

        sft_align_model:
          type: sapo_pipeline.datasets.HFCheckpointDataset
          filepath: data/06_models/align
          load_args:
            dtype: float32        # passed to from_pretrained
            is_trainable: true    # peft checkpoints: adapters trainable after load

    ``load_args``: ``is_trainable`` (peft only, default False), ``base_model_path`` (peft only: the
    base model directory when the checkpoint has no ``base_model/``), anything else goes to
    ``AutoModelForCausalLM.from_pretrained``.
    ``save_args``: ``save_base_model`` (peft only, default True), anything else goes to the
    model's ``save_pretrained`` (e.g. ``max_shard_size``).
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {"is_trainable": False, "base_model_path": None}
    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {"save_base_model": True}

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self.metadata = metadata

    # ------------------------------------------------------------------ load
    def load(self) -> Checkpoint:
        root = self._filepath
        if not root.is_dir():
            leftovers = sorted(p.name for p in root.parent.glob(f".{root.name}.old-*"))
            hint = (
                f"; a previous save was interrupted, the earlier checkpoint is in {leftovers}"
                if leftovers
                else ""
            )
            raise DatasetError(f"checkpoint directory absent: {root}{hint}")
        args = dict(self._load_args)
        is_trainable = bool(args.pop("is_trainable"))
        base_path = args.pop("base_model_path")
        tokenizer = load_tokenizer(root)
        extra_file = root / EXTRA_FILE
        extra = json.loads(extra_file.read_text(encoding="utf-8")) if extra_file.exists() else {}
        if (root / ADAPTER_CONFIG).exists():
            model = self._load_peft(root, tokenizer, base_path, is_trainable, args)
        else:
            model = AutoModelForCausalLM.from_pretrained(root, local_files_only=True, **args)
        return Checkpoint(model=model, tokenizer=tokenizer, extra=extra)

    @staticmethod
    def _load_peft(
        root: Path, tokenizer: Any, base_path: str | None, is_trainable: bool, args: dict
    ) -> Any:
        from peft import PeftModel

        base_dir = root / BASE_DIR
        if not base_dir.is_dir():
            if base_path is None:
                raise DatasetError(
                    f"{root / ADAPTER_CONFIG}: peft checkpoint without {BASE_DIR}/ and no "
                    "load_args.base_model_path to put the adapter on"
                )
            base_dir = Path(base_path)
            if not base_dir.is_dir():
                raise DatasetError(f"load_args.base_model_path={base_path!r}: not a directory")
        base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, **args)
        rows = base.get_input_embeddings().weight.shape[0]
        if rows < len(tokenizer):
            # external base: grow to the tokenizer; the adapter holds the new rows' values
            base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        return PeftModel.from_pretrained(base, root, is_trainable=is_trainable)

    # ------------------------------------------------------------------ save
    def save(self, data: Checkpoint) -> None:
        if not all(hasattr(data, a) for a in ("model", "tokenizer", "extra")):
            raise DatasetError(
                f"{self._filepath}: expected a Checkpoint(model, tokenizer, extra), "
                f"got {type(data).__name__}"
            )
        if not isinstance(data.extra, dict) or not all(isinstance(k, str) for k in data.extra):
            raise DatasetError(f"{self._filepath}: Checkpoint.extra must be a dict with str keys")
        try:
            extra_text = json.dumps(data.extra, sort_keys=True, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{self._filepath}: Checkpoint.extra is not JSON: {exc}") from exc

        def write(out: Path) -> None:
            self._write(data, out)
            (out / EXTRA_FILE).write_text(extra_text + "\n", encoding="utf-8")

        write_directory_atomically(self._filepath, write)

    def _write(self, data: Checkpoint, out: Path) -> None:
        args = dict(self._save_args)
        save_base = bool(args.pop("save_base_model"))
        model = data.model
        if _is_peft(model):
            if save_base:
                args.setdefault("save_embedding_layers", False)  # they are in base_model/
            model.save_pretrained(out, safe_serialization=True, **args)
            if save_base:
                base = copy.deepcopy(model).unload()  # adapters removed, resized embeddings kept
                base.save_pretrained(out / BASE_DIR)
                del base
        else:
            model.save_pretrained(out, **args)  # transformers 5: always safetensors
        data.tokenizer.save_pretrained(out)

    # ------------------------------------------------------------------ misc
    def _exists(self) -> bool:
        root = self._filepath
        return root.is_dir() and (
            (root / "config.json").exists() or (root / ADAPTER_CONFIG).exists()
        )

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "load_args": self._load_args,
            "save_args": self._save_args,
        }


class HFTokenizerDataset(AbstractDataset):
    """A tokenizer directory (``save_pretrained``), loaded with our exact pipeline.

    Loaded with :func:`sapo_pipeline.model.tokenizer.load_tokenizer`, not ``AutoTokenizer``
    (which would swap in a model-family class beside a Qwen2 config). Written atomically.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        if not (self._filepath / "tokenizer.json").is_file():
            raise DatasetError(f"no tokenizer at {self._filepath}; run the node that writes it")
        return load_tokenizer(self._filepath)

    def save(self, data: Any) -> None:
        write_directory_atomically(self._filepath, data.save_pretrained)

    def _exists(self) -> bool:
        return (self._filepath / "tokenizer.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
