"""``server`` backend: an SGLang (or any OpenAI-compatible) server over HTTP.

``/v1/chat/completions`` for chat (the server applies the chat template), ``/v1/completions`` for raw
text. At most ``max_concurrency`` requests in flight (the server batches them). Retries (tenacity,
not a hand-written loop): connection errors, per-attempt timeouts, 429 and 5xx answers, waiting
the server's ``Retry-After`` when it sends one, else exponential backoff with full jitter (so a
fleet of episodes does not retry in lockstep); other 4xx answers fail at once with the server's
message. Every request, retries and waits included, ends within ``request_timeout_s``. With
``model_path`` set, the backend launches and owns a local SGLang server (``managed_server``) and
stops it on ``close()``. httpx's one-INFO-line-per-request log is set to WARNING unless the user
configured that logger.

Requests keep SGLang's radix cache useful: a conversation is sent as the same messages plus the new
ones, so each turn's rendered prompt starts with the previous turn's text.

CLI (smoke test of a managed server, used by ``scripts/sglang_cpu_venv.sh --smoke``):
``python -m verl_ext_eval.backends.openai_server smoke --model-path DIR [--python VENV/bin/python]``
"""
from __future__ import annotations

import argparse
import asyncio
import email.utils
import logging
import os
import random
import time
from typing import Any

from verl_ext_eval.backends.base import Generation, SamplingParams, build_generation, request_fields
from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer, port_is_free

logger = logging.getLogger(__name__)

_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content")


class ServerError(RuntimeError):
    """A request failed for good (after retries, or a 4xx answer); the message has the server's text."""


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; ``retry_after``: the server's wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 10.2.3); None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIServerBackend:
    """Client of ``base_url`` (e.g. ``http://127.0.0.1:30000``), or of a server it launches when
    ``model_path`` is given (``python``: the SGLang venv's interpreter; ``launch``: more LaunchSpec
    fields such as ``device``, ``port``, ``log_path``, ``extra_args``)."""

    name = "server"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        request_timeout_s: float | None = None,
        top_logprobs: int = 5,
        chat_template_kwargs: dict | None = None,
        chat_template: str | None = None,
        model_path: str | None = None,
        python: str | None = None,
        launch: dict | None = None,
    ):
        if (base_url is None) == (model_path is None):
            raise ServerError("server backend: give exactly one of base_url (a running server) or model_path "
                              "(launch one)")
        if max_concurrency < 1 or retries < 0:
            raise ServerError(f"server backend: need max_concurrency >= 1 and retries >= 0, got "
                              f"{max_concurrency} and {retries}")
        self.server: ManagedServer | None = None
        self._template_file = _template_file(chat_template, model_path)
        if model_path is not None:
            launch = dict(launch or {})
            if self._template_file is not None:
                launch["extra_args"] = (*launch.get("extra_args", ()), "--chat-template", self._template_file)
            try:
                self.server = ManagedServer(LaunchSpec(model_path=str(model_path), python=str(python or ""),
                                                       **launch))
            except BaseException:
                if self._template_file is not None:
                    os.unlink(self._template_file)
                raise
            base_url = self.server.base_url
        self.base_url = str(base_url).rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.model = model
        self.max_concurrency, self.timeout_s = max_concurrency, timeout_s
        self.retries, self.backoff_s, self.top_logprobs = retries, backoff_s, top_logprobs
        self.max_backoff_s = max_backoff_s
        # the whole request, every attempt and wait included; default: each attempt its full timeout
        self.request_timeout_s = request_timeout_s or timeout_s * (retries + 1) + max_backoff_s * retries
        httpx_logger = logging.getLogger("httpx")
        if httpx_logger.level == logging.NOTSET:
            httpx_logger.setLevel(logging.WARNING)  # per-request INFO lines off unless asked for
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _bind_loop(self) -> None:
        """httpx clients and semaphores belong to one event loop; make fresh ones for a new loop."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s, limits=limits)
            self._sem = asyncio.Semaphore(self.max_concurrency)

    def _wait(self, state) -> float:
        """Seconds before the next attempt: the server's ``Retry-After`` (plus up to 10% jitter),
        else exponential backoff with full jitter, capped at ``max_backoff_s``."""
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return after * (1 + 0.1 * random.random())
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1)))

    async def _attempt(self, method: str, path: str, body: dict | None) -> dict:
        import httpx

        try:
            async with self._sem:
                resp = await self._client.request(method, path, json=body)
        except httpx.TransportError as e:  # connect/read errors, per-attempt timeouts
            raise _Retryable(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
        if resp.status_code in RETRY_STATUSES:
            after = parse_retry_after(resp.headers.get("retry-after"))
            hint = f" (Retry-After {after:.1f} s)" if after is not None else ""
            raise _Retryable(f"HTTP {resp.status_code}{hint}: {resp.text[:300]}", after)
        if resp.status_code >= 400:
            raise ServerError(f"{method} {self.base_url}{path} -> HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            data = resp.json()
        except ValueError as e:
            raise ServerError(f"{method} {self.base_url}{path}: answer is not JSON ({e})") from e
        choice = (data.get("choices") or [{}])[0] if isinstance(data, dict) else {}
        if choice.get("finish_reason") == "abort":
            raise _Retryable(f"request aborted by the server: {choice}")
        return data

    async def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

        self._bind_loop()
        where = f"{method} {self.base_url}{path}"
        attempts: list[str] = []

        def log_retry(state) -> None:
            attempts.append(str(state.outcome.exception()))
            logger.warning("%s failed (%s); retry %d/%d in %.1f s", where, attempts[-1], state.attempt_number,
                           self.retries, state.next_action.sleep if state.next_action else 0.0)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.retries + 1), wait=self._wait, reraise=True,
                                 retry=retry_if_exception_type(_Retryable), before_sleep=log_retry)
        try:
            async with asyncio.timeout(self.request_timeout_s):
                async for attempt in retrying:
                    with attempt:
                        return await self._attempt(method, path, body)
        except TimeoutError:
            last = f"; last error: {attempts[-1]}" if attempts else ""
            raise ServerError(f"{where}: no answer within {self.request_timeout_s:.1f} s (request_timeout_s), "
                              f"{len(attempts) + 1} attempt(s){last}") from None
        except _Retryable as e:
            raise ServerError(f"{where} failed after {self.retries + 1} attempts: {e}") from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def model_name(self) -> str:
        """The ``model`` given, else the first one ``/v1/models`` lists."""
        if self.model is None:
            data = await self._request("GET", "/v1/models")
            models = [m.get("id") for m in data.get("data", []) if m.get("id")]
            if not models:
                raise ServerError(f"{self.base_url}/v1/models lists no model; pass model=NAME")
            self.model = models[0]
        return self.model

    def _sampling_body(self, params: SamplingParams) -> dict:
        return request_fields(params, max_tokens_key="max_tokens", seed_key="seed")

    # -- Backend ----------------------------------------------------------------------------------
    async def chat(self, messages: list[dict], params: SamplingParams) -> Generation:
        body = {"model": await self.model_name(), **self._sampling_body(params),
                "messages": [{k: m[k] for k in _MESSAGE_KEYS if m.get(k) is not None} for m in messages]}
        if self.chat_template_kwargs:
            body["chat_template_kwargs"] = self.chat_template_kwargs
        if params.logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        data = await self._request("POST", "/v1/chat/completions", body)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        steps = None
        if params.logprobs and choice.get("logprobs"):
            steps = [[t["logprob"] for t in (step.get("top_logprobs") or [step])]
                     for step in choice["logprobs"].get("content") or []]
        meta = {k: v for k, v in (("matched_stop", choice.get("matched_stop")),
                                  ("reasoning_content", message.get("reasoning_content"))) if v is not None}
        return build_generation(message.get("content") or "", choice.get("finish_reason"),
                                (data.get("usage") or {}).get("completion_tokens"), params, steps, meta)

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        body = {"model": await self.model_name(), "prompt": prompt, **self._sampling_body(params)}
        if params.logprobs:
            body["logprobs"] = self.top_logprobs
        data = await self._request("POST", "/v1/completions", body)
        choice = data["choices"][0]
        steps = None
        if params.logprobs and choice.get("logprobs"):
            steps = [list(top.values()) for top in choice["logprobs"].get("top_logprobs") or [] if top]
        meta = {"matched_stop": choice["matched_stop"]} if choice.get("matched_stop") is not None else {}
        return build_generation(choice.get("text") or "", choice.get("finish_reason"),
                                (data.get("usage") or {}).get("completion_tokens"), params, steps, meta)

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except RuntimeError:  # created on an event loop that is gone
                pass
            self._client, self._loop = None, None
        if self.server is not None:
            await asyncio.to_thread(self.server.close)
            self.server = None
        if self._template_file is not None:
            os.unlink(self._template_file)
            self._template_file = None


def _template_file(chat_template: str | None, model_path: str | None) -> str | None:
    """A ``.jinja`` file with ``chat_template``'s text (inline Jinja or a file, as training's
    ``model.custom_chat_template``) for the SGLang server this backend launches (``--chat-template``;
    SGLang strips the file's leading and trailing newlines). A running server keeps its own."""
    if chat_template is None:
        return None
    if model_path is None:
        raise ServerError("server backend: chat_template applies to a server it launches (model_path); the server "
                          "at base_url renders with its own template: start it with --chat-template FILE")
    import tempfile

    from verl_ext.chat_template import resolve_chat_template

    text = resolve_chat_template(chat_template, "backend chat_template")
    fd, path = tempfile.mkstemp(prefix="verl-ext-chat-template-", suffix=".jinja")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


async def _smoke(backend: OpenAIServerBackend) -> list[Generation]:
    greedy = SamplingParams(max_new_tokens=24)
    return [
        await backend.chat([{"role": "user", "content": "What is 2+3?"}], greedy),
        await backend.complete("The capital of France is", SamplingParams(max_new_tokens=16, stop=("\n", "."))),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext_eval.backends.openai_server",
        description="Smoke-test a managed SGLang server: launch, /health, one chat and one completion, stop.\n"
        "Example: python -m verl_ext_eval.backends.openai_server smoke --model-path $(python -m verl_ext.assets smollm2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["smoke"])
    parser.add_argument("--model-path", required=True, help="HF model folder to serve")
    parser.add_argument("--python", default="", help="the SGLang venv's python (default: $SGLANG_VENV or "
                        ".cache/sglang-venv)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    start = time.monotonic()
    try:
        backend = OpenAIServerBackend(model_path=args.model_path, python=args.python or None,
                                      launch={"device": args.device, "startup_timeout_s": args.startup_timeout})
    except Exception as e:  # noqa: BLE001 - CLI: one line, no traceback
        print(f"error: {e}")
        return 1
    port = backend.server.port if backend.server else 0
    print(f"healthy after {time.monotonic() - start:.1f} s at {backend.base_url}")

    async def run() -> list[Generation]:
        try:
            return await _smoke(backend)
        finally:
            await backend.close()

    try:
        chat, completion = asyncio.run(run())
    except ServerError as e:
        print(f"error: {e}")
        return 1
    print(f"chat: {chat.text!r} ({chat.num_tokens} tokens, {chat.finish_reason})")
    print(f"completion: {completion.text!r} ({completion.num_tokens} tokens, {completion.finish_reason})")
    if not chat.text.strip() or not port_is_free(port):
        print("error: empty chat answer" if not chat.text.strip() else f"error: port {port} still in use")
        return 1
    print(f"ok: server stopped, port {port} free ({time.monotonic() - start:.1f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
