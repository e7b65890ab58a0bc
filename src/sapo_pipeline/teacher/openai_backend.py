"""Teacher over any OpenAI-compatible chat-completions endpoint (stdlib HTTP, no SDK).

* The API key comes from the environment variable named by ``openai.api_key_env`` (Kedro passes
  credentials to datasets, not to nodes, so a node cannot receive them; an environment variable
  keeps the key out of the parameters, the catalog and the logs). It is sent only as an
  ``Authorization: Bearer`` header and never logged or reported. ``api_key_env: null`` sends no
  key (local vLLM / llama.cpp servers).
* ``concurrency`` requests run in a thread pool; each has a socket timeout of ``timeout_s``.
* 429, 5xx, timeouts and connection errors are retried up to ``max_retries`` times with
  exponential backoff ``min(backoff_max_s, backoff_base_s * 2**n) * (1 + jitter * U)``; a
  ``Retry-After`` header (seconds or HTTP date, capped at ``max_retry_after_s``) replaces the
  backoff. Other 4xx fail at once. A body that is not a chat completion is rejected as
  ``malformed_body``. Every attempt counts in ``stats.requests_made``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from email.utils import parsedate_to_datetime
from typing import Any

from sapo_pipeline.teacher.cache import ResponseCache
from sapo_pipeline.teacher.config import OpenAIConfig, TeacherRequestConfig
from sapo_pipeline.teacher.llm import Completion, LLMTeacher, Messages

log = logging.getLogger(__name__)


def read_api_key(env_name: str | None) -> str | None:
    """The key from ``$env_name`` (None when ``env_name`` is None); ValueError when unset."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise ValueError(
            f"teacher_corpus.teacher.openai: environment variable {env_name} is not set; export "
            "it before the run, or set api_key_env: null for a server that needs no key"
        )
    return key


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def completion_text(raw: bytes) -> str:
    """The assistant text of a chat-completions response body; ValueError if it has none."""
    data = json.loads(raw.decode("utf-8"))
    content = data["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("message.content is not a string")
    return content


class OpenAITeacher(LLMTeacher):
    """Chat-completions teacher with bounded concurrency, retries and a response cache."""

    backend = "openai"

    def __init__(self, cfg: OpenAIConfig, requests: TeacherRequestConfig,
                 cache: ResponseCache | None = None, log_every: int = 1000,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(model=cfg.model, requests=requests, cache=cache, log_every=log_every)
        self.cfg = cfg
        self._api_key = read_api_key(cfg.api_key_env)
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAITeacher(url={self._url!r}, model={self.model!r})"

    def generation_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.cfg.temperature,
                                  "max_tokens": self.cfg.max_tokens}
        if self.cfg.seed is not None:
            params["seed"] = self.cfg.seed
        params.update(self.cfg.extra_body)
        return params

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "url": self._url}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.max_retry_after_s)
        base = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2 ** attempt))
        with self._rng_lock:
            u = self._rng.random()
        return base * (1.0 + self.cfg.jitter * u)

    def _attempt(self, body: bytes) -> tuple[Completion | None, str, float | None]:
        """One HTTP attempt: (final completion or None to retry, reason, retry-after)."""
        self.stats.add("requests_made")
        req = urllib.request.Request(self._url, data=body, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            if status == 429 or status >= 500:
                return None, f"http_{status}", retry_after
            return Completion(error=f"http_{status}"), f"http_{status}", None
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, TimeoutError)
            return None, "timeout" if timed_out else "connection_error", None
        except TimeoutError:
            return None, "timeout", None
        except (ConnectionError, http.client.HTTPException, OSError):
            return None, "connection_error", None
        try:
            return Completion(text=completion_text(raw)), "ok", None
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            return Completion(error="malformed_body"), "malformed_body", None

    def _request(self, messages: Messages) -> Completion:
        body = json.dumps({"model": self.model, "messages": messages,
                           **self.generation_params()}).encode("utf-8")
        reason = "no_attempt"
        for attempt in range(self.cfg.max_retries + 1):
            comp, reason, retry_after = self._attempt(body)
            if comp is not None:
                return comp
            if attempt == self.cfg.max_retries:
                break
            delay = self._backoff(attempt, retry_after)
            self.stats.add("retries")
            self.stats.note(f"retry_{reason}")
            log.warning("openai teacher: %s on attempt %d/%d, retrying in %.2fs", reason,
                        attempt + 1, self.cfg.max_retries + 1, delay)
            self._sleep(delay)
        log.warning("openai teacher: giving up after %d attempts (%s)",
                    self.cfg.max_retries + 1, reason)
        return Completion(error=reason)

    def _generate(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Completion]]:
        if not prompts:
            return
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency,
                                  thread_name_prefix="openai-teacher")
        try:
            futures = {pool.submit(self._request, p): i for i, p in enumerate(prompts)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
