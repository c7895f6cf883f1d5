"""The server backend against a fake OpenAI server on 127.0.0.1 (no SGLang needed)."""
from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

from verl_ext_eval.backends import make_backend  # noqa: E402
from verl_ext_eval.backends.base import SamplingParams  # noqa: E402
from verl_ext_eval.backends.managed_server import free_port  # noqa: E402
from verl_ext_eval.backends.openai_server import ServerError, parse_retry_after  # noqa: E402


def run(coro):
    return asyncio.run(coro)


def _posts(fake):
    return [(p, b) for p, b in fake.requests if b is not None]


async def _call(backend, method, *args):
    try:
        return await getattr(backend, method)(*args)
    finally:
        await backend.close()


def test_chat_request_and_answer():
    with FakeOpenAI(text="The answer is 5") as fake:
        backend = make_backend("server", base_url=fake.url + "/v1", chat_template_kwargs={"enable_thinking": False})
        messages = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+3?", "loss": False}]
        params = SamplingParams(max_new_tokens=20, stop=("\n",), seed=7, logprobs=True)
        g = run(_call(backend, "chat", messages, params))
        assert fake.requests[0] == ("/v1/models", None)  # model name discovered once
        path, body = _posts(fake)[0]
        assert path == "/v1/chat/completions"
        assert body["model"] == "fake-model" and body["max_tokens"] == 20
        assert body["temperature"] == 0.0 and body["stop"] == ["\n"] and body["seed"] == 7
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
        assert body["messages"][1] == {"role": "user", "content": "2+3?"}  # our loss flag stays home
        assert (g.text, g.num_tokens, g.finish_reason) == ("The answer is 5", 2, "stop")
        assert g.entropy == pytest.approx(math.log(2) / 2)  # steps: {0.5, 0.5} and {1.0}


def test_completion_sampling_length_and_client_side_stop():
    with FakeOpenAI(text="Paris. And more") as fake:
        backend = make_backend("server", base_url=fake.url, model="given")
        params = SamplingParams(max_new_tokens=2, temperature=0.8, top_p=0.9, stop=".", logprobs=True)  # one string, not characters
        g = run(_call(backend, "complete", "The capital of France is", params))
        assert all(p != "/v1/models" for p, _ in fake.requests)
        path, body = _posts(fake)[0]
        assert path == "/v1/completions" and body["model"] == "given" and body["prompt"].startswith("The capital")
        assert body["temperature"] == 0.8 and body["top_p"] == 0.9 and body["logprobs"] == 5
        assert g.text == "Paris" and g.finish_reason == "stop" and g.meta["matched_stop"] == "."
        assert g.entropy == pytest.approx(math.log(2) / 2)
        g = run(_call(make_backend("server", base_url=fake.url, model="m"), "complete", "x", SamplingParams(max_new_tokens=2)))
        assert g.finish_reason == "length" and g.text == "Paris. And more"


def test_retries_5xx_then_succeeds():
    with FakeOpenAI(fail_first=2) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=3, backoff_s=0.01)
        g = run(_call(backend, "complete", "x", SamplingParams()))
        assert g.text == "Hello world" and len(_posts(fake)) == 3


def test_gives_up_after_retries_with_the_last_error():
    with FakeOpenAI(fail_first=10) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=2, backoff_s=0.01)
        with pytest.raises(ServerError, match="after 3 attempts.*HTTP 503.*scripted failure 3"):
            run(_call(backend, "complete", "x", SamplingParams()))
        assert len(_posts(fake)) == 3


def test_4xx_is_not_retried():
    with FakeOpenAI(fail_first=5, fail_status=400) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=3, backoff_s=0.01)
        with pytest.raises(ServerError, match="HTTP 400.*scripted failure 1"):
            run(_call(backend, "chat", [{"role": "user", "content": "x"}], SamplingParams()))
        assert len(_posts(fake)) == 1


def test_timeout_is_retried():
    with FakeOpenAI(delay_s=1.0, delay_first=1) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", timeout_s=0.3, retries=1, backoff_s=0.01)
        assert run(_call(backend, "complete", "x", SamplingParams())).text == "Hello world"
    with FakeOpenAI(delay_s=1.0) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", timeout_s=0.2, retries=1, backoff_s=0.01)
        with pytest.raises(ServerError, match="Timeout"):
            run(_call(backend, "complete", "x", SamplingParams()))


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_then_the_request_succeeds(status):
    # backoff_s would retry at once: only the server's Retry-After can explain the wait
    with FakeOpenAI(fail_first=1, fail_status=status, retry_after="1") as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=2, backoff_s=0.001)
        g = run(_call(backend, "chat", [{"role": "user", "content": "x"}], SamplingParams()))
        assert g.text == "Hello world" and len(fake.post_times) == 2
        assert 1.0 <= fake.post_times[1] - fake.post_times[0] < 2.0


def test_429_without_retry_after_backs_off_with_jitter_and_gives_up_clearly():
    with FakeOpenAI(fail_first=10, fail_status=429) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=2, backoff_s=0.05)
        with pytest.raises(ServerError, match="after 3 attempts.*HTTP 429.*scripted failure 3"):
            run(_call(backend, "complete", "x", SamplingParams()))
        gaps = [b - a for a, b in zip(fake.post_times, fake.post_times[1:])]
        assert len(gaps) == 2 and all(g < 0.5 for g in gaps)


def test_a_server_that_never_answers_fails_within_the_request_bound():
    with FakeOpenAI(delay_s=30.0) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", timeout_s=20.0, retries=3,
                               request_timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(ServerError, match=r"no answer within 1\.0 s \(request_timeout_s\)"):
            run(_call(backend, "complete", "x", SamplingParams()))
        assert time.monotonic() - start < 3.0


def test_a_retry_after_beyond_the_bound_ends_at_the_bound():
    with FakeOpenAI(fail_first=5, fail_status=503, retry_after="60") as fake:
        backend = make_backend("server", base_url=fake.url, model="m", retries=3, request_timeout_s=0.8)
        start = time.monotonic()
        with pytest.raises(ServerError, match="no answer within.*Retry-After 60.0 s"):
            run(_call(backend, "complete", "x", SamplingParams()))
        assert time.monotonic() - start < 2.5 and len(fake.post_times) == 1


def test_parse_retry_after_seconds_and_dates():
    import email.utils

    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(later) <= 31


def test_httpx_request_logs_are_off_by_default():
    import logging

    logging.getLogger("httpx").setLevel(logging.NOTSET)
    make_backend("server", base_url="http://127.0.0.1:1", model="m")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


def test_connection_refused_is_retried_then_reported():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = make_backend("server", base_url=url, model="m", retries=2, backoff_s=0.01)
    with pytest.raises(ServerError, match="after 3 attempts.*ConnectError"):
        run(_call(backend, "complete", "x", SamplingParams()))


def test_concurrency_limit():
    with FakeOpenAI(delay_s=0.15) as fake:
        backend = make_backend("server", base_url=fake.url, model="m", max_concurrency=2)

        async def go():
            try:
                return await asyncio.gather(*[backend.complete(f"p{i}", SamplingParams()) for i in range(6)])
            finally:
                await backend.close()

        out = run(go())
        assert len(out) == 6 and fake.max_in_flight == 2


def test_no_models_listed_and_bad_settings():
    with FakeOpenAI(models=()) as fake:
        with pytest.raises(ServerError, match="lists no model"):
            run(_call(make_backend("server", base_url=fake.url), "complete", "x", SamplingParams()))
    with pytest.raises(ServerError, match="exactly one of base_url"):
        make_backend("server")


def test_custom_chat_template_goes_to_the_launched_server(monkeypatch, tmp_path):
    """A launched SGLang gets --chat-template FILE with the template's text; a running one cannot be told."""
    import os

    from verl_ext_eval.backends import openai_server

    launched = []

    class FakeServer:
        base_url = "http://127.0.0.1:1"

        def __init__(self, spec):
            launched.append(spec)

        def close(self):
            pass

    monkeypatch.setattr(openai_server, "ManagedServer", FakeServer)
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    source = tmp_path / "r1.jinja"
    source.write_text(template)
    backend = make_backend("server", model_path=str(tmp_path), chat_template=str(source),
                           launch={"extra_args": ("--mem-fraction-static", "0.3")})
    cmd = launched[0].command(30000)
    flag = cmd.index("--chat-template")
    assert "--mem-fraction-static" in cmd
    assert open(cmd[flag + 1], encoding="utf-8").read() == template and cmd[flag + 1].endswith(".jinja")
    run(backend.close())
    assert not os.path.exists(cmd[flag + 1])
    with pytest.raises(ServerError, match="start it with --chat-template FILE"):
        make_backend("server", base_url="http://127.0.0.1:1", chat_template=template)
