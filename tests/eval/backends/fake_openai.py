"""A tiny OpenAI-compatible server on 127.0.0.1 for tests: scripted failures, delays, recorded bodies."""
from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, fail_first: int = 0, fail_status: int = 503, delay_s: float = 0.0, delay_first: int | None = None,
                 text: str = "Hello world", models: tuple[str, ...] = ("fake-model",), retry_after: str | None = None):
        self.fail_first, self.fail_status, self.retry_after = fail_first, fail_status, retry_after
        self.post_times: list[float] = []  # monotonic arrival time of each POST
        self.delay_s, self.delay_first = delay_s, delay_first
        self.text, self.models = text, models
        self.requests: list[tuple[str, dict | None]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                owner.requests.append((self.path, None))
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m} for m in owner.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with owner._lock:
                    owner.requests.append((self.path, body))
                    owner.post_times.append(time.monotonic())
                    n = len([r for r in owner.requests if r[1] is not None])
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    if owner.delay_s and (owner.delay_first is None or n <= owner.delay_first):
                        time.sleep(owner.delay_s)
                    if n <= owner.fail_first:
                        extra = {"Retry-After": owner.retry_after} if owner.retry_after is not None else None
                        return self._send(owner.fail_status, {"error": {"message": f"scripted failure {n}"}}, extra)
                    self._send(200, owner.answer(self.path, body))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, path: str, body: dict) -> dict:
        text = self.text
        finish = "length" if body.get("max_tokens", 100) <= 2 else "stop"
        half = math.log(0.5)
        if path == "/v1/chat/completions":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [
                    {"token": "a", "logprob": half, "top_logprobs": [{"token": "a", "logprob": half},
                                                                       {"token": "b", "logprob": half}]},
                    {"token": "c", "logprob": 0.0, "top_logprobs": [{"token": "c", "logprob": 0.0}]},
                ]}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {"tokens": ["a", "c"], "top_logprobs": [{"a": half, "b": half}, {"c": 0.0}]}
        return {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
