"""The OpenAI-compatible teacher against a local chat-completions server with injected faults."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sapo_pipeline.teacher.base import ItemInfo, ReasoningRequest
from sapo_pipeline.teacher.cache import ResponseCache, cache_key
from sapo_pipeline.teacher.config import CacheConfig, OpenAIConfig, TeacherConfig
from sapo_pipeline.teacher.factory import make_teacher
from sapo_pipeline.teacher.hierarchy import PrefixSummary
from sapo_pipeline.teacher.llm import AnswerError, parse_step_answer, parse_text_answer
from sapo_pipeline.teacher.openai_backend import parse_retry_after

KEY = "sk-test-SECRET-1234567890"
FAULTS = ("FAULT_429", "FAULT_500", "FAULT_TIMEOUT", "FAULT_MALFORMED", "FAULT_ALWAYS500",
          "FAULT_400", "BADSTEPS", "SLOW")


class FakeChatServer:
    """A chat-completions server on 127.0.0.1 whose faults are named inside the prompt."""

    def __init__(self) -> None:
        self.attempts: Counter = Counter()  # fault marker ("ok" when none) -> attempts
        self.auth: list[str | None] = []
        self.models: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_POST(self):  # http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.auth.append(self.headers.get("Authorization"))
                    server.models.add(body["model"])
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status, payload, headers=()):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, body):
                prompt = body["messages"][-1]["content"]
                fault = next((f for f in FAULTS if f in prompt), "ok")
                with server.lock:
                    server.attempts[fault] += 1
                    n = server.attempts[fault]
                if fault == "FAULT_429" and n == 1:
                    return self._send(429, {"error": "slow down"}, [("Retry-After", "7")])
                if fault == "FAULT_500" and n <= 2 or fault == "FAULT_ALWAYS500":
                    return self._send(500, {"error": "boom"})
                if fault == "FAULT_400":
                    return self._send(400, {"error": "bad request"})
                if fault == "FAULT_TIMEOUT" and n == 1:
                    time.sleep(1.0)  # longer than the client's timeout
                if fault == "SLOW":
                    time.sleep(0.05)
                if fault == "FAULT_MALFORMED":
                    return self._send(200, b"<html>not json</html>")
                if "Explain in exactly" in prompt:
                    text = ("Step 1: only one step" if fault == "BADSTEPS" else
                            "<think>hidden musing</think>Step 1: Broad group.\n"
                            "Step 2: **Sub-type.**\nStep 3: The item itself.")
                else:
                    text = f"A fine product. ({fault})"
                return self._send(200, {"choices": [{"message": {"role": "assistant",
                                                                 "content": text}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = FakeChatServer()
    yield srv
    srv.close()


def make(server, tmp_path, monkeypatch, sleeps, **overrides):
    monkeypatch.setenv("SAPO_TEST_TEACHER_KEY", KEY)
    openai = {"base_url": server.url, "model": "fake-model", "api_key_env": "SAPO_TEST_TEACHER_KEY",
              "concurrency": 4, "timeout_s": 0.5, "max_retries": 3, "backoff_base_s": 0.01,
              "backoff_max_s": 0.05, "jitter": 0.5, **overrides}
    cfg = TeacherConfig(backend="openai", openai=OpenAIConfig(**openai),
                        cache=CacheConfig(enabled=True, path=str(tmp_path / "cache.sqlite")))
    teacher = make_teacher(cfg, log_every=2)
    teacher._sleep = sleeps.append  # record backoffs instead of waiting
    return teacher


def items(*markers):
    return [ItemInfo(item_id=i, title=f"Pen {m}", brand="Acme", categories=("Office", "Pens"))
            for i, m in enumerate(markers)]


def test_retries_rejections_key_and_cache(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    teacher = make(server, tmp_path, monkeypatch, sleeps)
    batch = items("plain", "FAULT_429", "FAULT_500", "FAULT_TIMEOUT", "FAULT_MALFORMED",
                  "FAULT_ALWAYS500", "FAULT_400")
    out = teacher.describe_items(batch)
    assert [o.ok for o in out] == [True, True, True, True, False, False, False]
    assert out[1].value == "A fine product. (FAULT_429)"
    assert [o.error for o in out[4:]] == ["malformed_body", "http_500", "http_400"]
    assert server.attempts == Counter({"ok": 1, "FAULT_429": 2, "FAULT_500": 3,
                                       "FAULT_TIMEOUT": 2, "FAULT_MALFORMED": 1,
                                       "FAULT_ALWAYS500": 4, "FAULT_400": 1})
    stats = teacher.stats.to_dict()
    assert stats["requests_made"] == sum(server.attempts.values()) == 14
    assert stats["retries"] == 1 + 2 + 1 + 3
    assert stats["notes"] == {"retry_http_429": 1, "retry_http_500": 5, "retry_timeout": 1}
    assert stats["rejected"] == {"describe_item": {"malformed_body": 1, "http_500": 1,
                                                   "http_400": 1}}
    assert 7.0 in sleeps  # Retry-After honoured instead of the backoff
    backoffs = sorted(s for s in sleeps if s != 7.0)
    assert len(backoffs) == 6 and all(0.01 <= s <= 0.075 for s in backoffs)
    assert set(server.auth) == {f"Bearer {KEY}"} and server.models == {"fake-model"}
    assert stats["cache_misses"] == 7 and stats["cache_hits"] == 0
    teacher.close()

    # A second run over the answered prompts costs zero requests; failures were not cached.
    before = sum(server.attempts.values())
    again = make(server, tmp_path, monkeypatch, [])
    out2 = again.describe_items(batch[:4])
    assert [o.value for o in out2] == [o.value for o in out[:4]]
    assert sum(server.attempts.values()) == before
    assert again.stats.to_dict()["requests_made"] == 0
    assert again.stats.to_dict()["cache_hits"] == 4
    retry = again.describe_items(batch[4:5])  # not cached: asked again
    assert retry[0].error == "malformed_body" and server.attempts["FAULT_MALFORMED"] == 2
    again.close()

    # The key is sent, never logged, reported or shown.
    assert KEY not in caplog.text
    assert "retrying" in caplog.text  # the retries were logged (without the key)
    assert KEY not in repr(again) and KEY not in json.dumps(again.describe())
    assert KEY not in json.dumps(stats)


def test_reasoning_answers_parse_or_are_rejected(server, tmp_path, monkeypatch):
    teacher = make(server, tmp_path, monkeypatch, [])
    summary = (PrefixSummary((1,), 10, categories=(("Pens", 1.0),)),
               PrefixSummary((1, 2), 4, words=(("gel", 1.0),)))

    def req(key, marker):
        return ReasoningRequest(key=key, history=tuple(items("a", "b")),
                                target=items(marker)[0], codes=(1, 2, 3), hierarchy=summary)

    out = teacher.reason_steps_batch([req(0, "good"), req(1, "BADSTEPS"), req(2, "good2")])
    assert out[0].value == ["Broad group.", "Sub-type.", "The item itself."]
    assert out[1].error == "wrong_step_count" and out[2].ok
    teacher.close()
    again = make(server, tmp_path, monkeypatch, [])
    out2 = again.reason_steps_batch([req(1, "BADSTEPS")])  # cached raw answer, rejected again
    assert out2[0].error == "wrong_step_count"
    assert again.stats.to_dict()["requests_made"] == 0
    assert again.stats.to_dict()["rejected"] == {"reason_steps": {"wrong_step_count": 1}}
    again.close()


def test_interrupted_run_resumes_from_the_cache(server, tmp_path, monkeypatch):
    teacher = make(server, tmp_path, monkeypatch, [], concurrency=1)
    real, calls = teacher._request, []

    def dies_on_third(messages):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return real(messages)

    teacher._request = dies_on_third
    batch = [ItemInfo(item_id=i, title=f"Pen number {i}") for i in range(5)]
    with pytest.raises(RuntimeError, match="interrupted"):
        teacher.describe_items(batch)
    assert len(teacher.cache) == 2  # what arrived before the interruption was committed
    teacher.close()
    resumed = make(server, tmp_path, monkeypatch, [])
    assert all(o.ok for o in resumed.describe_items(batch))
    stats = resumed.stats.to_dict()
    assert (stats["cache_hits"], stats["requests_made"]) == (2, 3)
    resumed.close()


def test_concurrency_is_bounded(server, tmp_path, monkeypatch):
    teacher = make(server, tmp_path, monkeypatch, [], concurrency=3)
    batch = [ItemInfo(item_id=i, title=f"Pen SLOW {i}") for i in range(9)]
    assert all(o.ok for o in teacher.describe_items(batch))
    assert 1 < server.max_in_flight <= 3
    teacher.close()


def test_key_handling(server, tmp_path, monkeypatch):
    monkeypatch.delenv("SAPO_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="SAPO_TEST_MISSING_KEY is not set"):
        make(server, tmp_path, monkeypatch, [], api_key_env="SAPO_TEST_MISSING_KEY")
    teacher = make(server, tmp_path, monkeypatch, [], api_key_env=None)
    assert teacher.describe_item(items("plain")[0]) == "A fine product. (ok)"
    assert server.auth == [None]
    teacher.close()


def test_parsers_and_helpers(tmp_path):
    assert parse_step_answer("Step 1: a\nstep 2) b\n**Step 3:** c", 3, 100) == ["a", "b", "c"]
    for text, reason in [("no steps here", "no_steps"), ("Step 1: a\nStep 3: b", "steps_out_of_order"),
                         ("Step 1: a\nStep 2: b", "wrong_step_count"),
                         ("Step 1: a\nStep 2:\nStep 3: c", "empty_step"),
                         ("Step 1: a <a_1>\nStep 2: b\nStep 3: c", "sid_in_block"),
                         ("<think>never closed Step 1: a", "unclosed_think"),
                         ("Step 1: " + "x" * 50 + "\nStep 2: b\nStep 3: c", "block_too_long")]:
        with pytest.raises(AnswerError) as info:
            parse_step_answer(text, 3, 40)
        assert info.value.reason == reason
    assert parse_text_answer("One. Two. Three is long.", 12) == ("One. Two.", True)
    with pytest.raises(AnswerError, match="empty_response"):
        parse_text_answer("<think>x</think>  ", 100)
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    k1 = cache_key("openai", "m", [{"role": "user", "content": "x"}], {"t": 0})
    assert k1 != cache_key("openai", "m", [{"role": "user", "content": "x"}], {"t": 1})
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(k1) is None
        cache.put(k1, "openai", "m", "answer")
    with ResponseCache(tmp_path / "c.sqlite") as cache:  # persisted (committed on put)
        assert cache.get(k1) == "answer" and (cache.hits, cache.misses) == (1, 0)
