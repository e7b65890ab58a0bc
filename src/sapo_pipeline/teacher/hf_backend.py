"""Teacher over a local causal LM directory (transformers, ``local_files_only=True``).

Greedy decoding, left-padded batches of ``batch_size`` prompts. The prompt is the tokenizer's
chat template when it has one (and ``use_chat_template``), else ``system + "\\n\\n" + user +
"\\n\\n"``. Only the generated continuation is decoded. Each finished batch is yielded (and so
cached) before the next one starts, so an interrupted run resumes where it stopped.
torch / transformers are imported when the teacher is built, not when this module is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sapo_pipeline.teacher.cache import ResponseCache
from sapo_pipeline.teacher.config import HFConfig, TeacherRequestConfig
from sapo_pipeline.teacher.llm import Completion, LLMTeacher, Messages

log = logging.getLogger(__name__)


class HFTeacher(LLMTeacher):
    """Local transformers causal LM as a teacher."""

    backend = "hf"

    def __init__(self, cfg: HFConfig, requests: TeacherRequestConfig,
                 cache: ResponseCache | None = None, log_every: int = 1000):
        root = Path(cfg.model_path)
        if not root.is_dir():
            raise FileNotFoundError(f"teacher_corpus.teacher.hf.model_path: no directory {root}")
        super().__init__(model=root.name, requests=requests, cache=cache, log_every=log_every)
        self.cfg = cfg
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"tokenizer in {root} has neither pad nor eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(
            root, local_files_only=True, dtype=getattr(torch, cfg.dtype))
        self.lm.eval()
        self._chat = bool(cfg.use_chat_template and getattr(self.tokenizer, "chat_template", None))
        log.info("hf teacher %s: %d parameters, chat template %s", root,
                 sum(p.numel() for p in self.lm.parameters()), "on" if self._chat else "off")

    def generation_params(self) -> dict[str, Any]:
        return {"max_new_tokens": self.cfg.max_new_tokens, "decoding": "greedy",
                "chat_template": self._chat}

    def _prompt_text(self, messages: Messages) -> str:
        if self._chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def _generate(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Completion]]:
        torch = self._torch
        bs = self.cfg.batch_size
        for start in range(0, len(prompts), bs):
            chunk = [self._prompt_text(p) for p in prompts[start:start + bs]]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True,
                                 add_special_tokens=not self._chat)
            enc.pop("token_type_ids", None)
            with torch.inference_mode():
                out = self.lm.generate(
                    **enc, do_sample=False, max_new_tokens=self.cfg.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            self.stats.add("requests_made", len(chunk))
            new = out[:, enc["input_ids"].shape[1]:]
            for j, row in enumerate(new):
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                yield start + j, Completion(text=text)

    def close(self) -> None:
        super().close()
        self.lm = None
