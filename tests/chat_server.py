"""A tiny OpenAI-compatible chat server on loopback whose answers the test decides.

Real HTTP (the ``openai`` engine talks to it exactly as to vLLM or llama.cpp); the answer to each
request comes from ``reply(prompt, body) -> (text, finish_reason)`` (``body``: the request JSON), so a test can make a model write
no tags, an empty section or a good codebook on purpose. Every prompt received is recorded.

    with chat_server(lambda prompt, body: ("<codebook>...</codebook>", "stop")) as (url, prompts): ...
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = Callable[[str, dict], tuple[str, str]]


@contextlib.contextmanager
def chat_server(reply: Reply, headers: list[Message] | None = None) -> Iterator[tuple[str, list[str]]]:
    """``headers``, when given, receives each request's HTTP headers (e.g. to see the API key arrive),
    looked up by name in any case (clients differ: ``Authorization``, ``authorization``)."""
    prompts: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            return

        def _send(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length))
            prompt = request["messages"][-1]["content"]
            with lock:
                prompts.append(prompt)
                if headers is not None:
                    headers.append(self.headers)
            n = int(request.get("n") or 1)
            choices = []
            for i in range(n):
                text, finish = reply(prompt, request)
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": finish})
            self._send(200, {"id": "x", "object": "chat.completion", "model": "scripted", "choices": choices,
                             "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 10 * n}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", prompts
    finally:
        server.shutdown()
        server.server_close()
