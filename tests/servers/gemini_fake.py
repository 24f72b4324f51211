"""A loopback fake of Vertex AI's `generateContent`, for the real `google-genai` client.

The test gives it a `model(request) -> (status, body)` function; the server records every
request so tests can check what the client really sent (enum schema, delimiters, parts).
Status `DROP` closes the connection without an answer (a dropped connection).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Model = Callable[[dict[str, Any]], tuple[int, Any]]
DROP = 0


def answer(label: str, logprob: float, *, prompt_tokens: int = 300) -> dict[str, Any]:
    """A generateContent response whose single candidate says `label`."""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": label}]},
                "finishReason": "STOP",
                "avgLogprobs": logprob,
                "logprobsResult": {
                    "chosenCandidates": [{"token": label, "logProbability": logprob}],
                    "topCandidates": [],
                },
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": 1,
            "totalTokenCount": prompt_tokens + 1,
        },
        "modelVersion": "gemini-2.5-flash",
    }


def error(code: int, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": status.lower(), "status": status}}


class FakeVertex:
    """The server's state: the model function and the requests received."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.url = ""


@contextmanager
def serve(model: Model) -> Iterator[FakeVertex]:
    """Run the fake on a free loopback port for the duration of the block."""
    state = FakeVertex(model)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.requests.append((self.path, body))
            status, payload = state.model(body) if ":generateContent" in self.path else (404, {})
            if status == DROP:
                self.close_connection = True
                return
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
