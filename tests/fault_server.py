"""A scriptable OpenAI chat-completions server on loopback (standard-library ``http.server``)
that misbehaves on request: used by the engine tests and by the fault tests of sampling runs."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    """An OpenAI chat-completions server on 127.0.0.1 whose answers are scripted.

    Each POST to ``/v1/chat/completions`` takes the next action from ``script`` (then
    ``default``). Actions are dicts with ``kind``:

    ``ok``         a normal answer: ``n`` choices (``ignore_n``: always 1; ``cap_n``: at most that),
                   optional ``content``, ``reasoning_content``, ``reasoning``, ``finish_reason``,
                   ``usage`` (False: none), ``delay`` seconds before answering
    ``status``     HTTP ``code`` with ``headers`` and a JSON error body (``echo_auth``: the
                   request's Authorization header is echoed into the message)
    ``malformed``  200 with a body that is not JSON
    ``cut_json``   200 with a complete HTTP body holding half a JSON document
    ``truncated``  200 announcing a longer Content-Length than it sends, then closing
    ``hang``       says nothing for ``seconds`` (or until the server stops)
    """

    def __init__(self) -> None:
        self.script: deque[dict[str, Any]] = deque()
        self.default: dict[str, Any] = {"kind": "ok"}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.counter = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "fault-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    action = outer.script.popleft() if outer.script else dict(outer.default)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    self._act(action, body)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _raw(self, raw: bytes, length: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw) if length is None else length))
                self.end_headers()
                self.wfile.write(raw)
                self.wfile.flush()

            def _act(self, action: dict[str, Any], body: dict[str, Any]) -> None:
                kind = action["kind"]
                if action.get("delay"):
                    outer.stopping.wait(action["delay"])
                if kind == "ok":
                    self._json(200, outer.completion(action, body))
                elif kind == "status":
                    message = action.get("message", "scripted failure")
                    if action.get("echo_auth"):
                        message += f" (you sent {self.headers.get('Authorization')})"
                    self._json(action["code"], {"error": {"message": message}}, action.get("headers"))
                elif kind == "malformed":
                    self._raw(b"<html>502 bad gateway, not json</html>")
                elif kind == "cut_json":
                    full = json.dumps(outer.completion({"kind": "ok"}, body)).encode()
                    self._raw(full[: len(full) // 2])
                elif kind == "truncated":
                    full = json.dumps(outer.completion({"kind": "ok"}, body)).encode()
                    self._raw(full[: len(full) // 2], length=len(full))
                    self.close_connection = True
                elif kind == "hang":
                    outer.stopping.wait(action.get("seconds", 30))
                    self.close_connection = True
                else:  # pragma: no cover
                    raise AssertionError(kind)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def completion(self, action: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n", 1))
        if action.get("ignore_n"):
            n = 1
        if action.get("cap_n"):
            n = min(n, action["cap_n"])
        choices = []
        for i in range(n):
            with self.lock:
                self.counter += 1
                serial = self.counter
            message: dict[str, Any] = {
                "role": "assistant",
                "content": action.get("content", f"Answer number {serial}. <rating>3</rating>"),
            }
            for field in ("reasoning_content", "reasoning"):
                if field in action:
                    message[field] = action[field]
            choices.append(
                {"index": i, "message": message, "finish_reason": action.get("finish_reason", "stop")}
            )
        payload: dict[str, Any] = {
            "id": "chatcmpl-fault", "object": "chat.completion", "model": "fault-model",
            "choices": choices,
        }
        if action.get("usage", True):
            payload["usage"] = {
                "prompt_tokens": 17, "completion_tokens": action.get("completion_tokens", 10 * n),
                "total_tokens": 17 + 10 * n,
            }
        return payload

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
