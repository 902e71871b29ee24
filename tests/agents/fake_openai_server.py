"""A local OpenAI-compatible HTTP server with scripted answers, for testing the real client."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer, sent after ``delay`` seconds."""

    status: int
    body: str
    delay: float = 0.0


@dataclass
class Script:
    """Answers to give, in order (the last one repeats), and the requests received; or, with
    ``respond``, the answer it gives to each request (for runs whose calls come in any order)."""

    answers: list[Answer]
    requests: list[dict[str, Any]] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], Answer] | None = None

    def next_answer(self, request: dict[str, Any]) -> Answer:
        if self.respond is not None:
            return self.respond(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def completion(content: str, finish_reason: str = "stop") -> Answer:
    """A 200 answer whose message content is ``content`` (cut off if ``finish_reason`` says)."""
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return Answer(200, json.dumps(body))


def error(status: int, message: str | None = None) -> Answer:
    """An error answer with ``status`` in the OpenAI error format."""
    body = {"error": {"message": message or f"scripted {status}", "type": "test"}}
    return Answer(status, json.dumps(body))


def slow(answer: Answer, seconds: float) -> Answer:
    """``answer``, sent only after ``seconds`` (to make the client time out)."""
    return dataclasses.replace(answer, delay=seconds)


@contextmanager
def fake_openai(script: Script) -> Iterator[str]:
    """Serve ``script`` on a free loopback port; yields the base URL (``.../v1``)."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = {"path": self.path, "body": json.loads(self.rfile.read(length))}
            with lock:
                script.requests.append(request)
                answer = script.next_answer(request)
            time.sleep(answer.delay)
            data = answer.body.encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class SentInput:
    """The input block of a request's user message, as the model received it."""

    boundary: str
    data: dict[str, Any]
    outside: str  # the user message without the block's JSON line


def sent_input(request: dict[str, Any]) -> SentInput:
    """Split a captured request's user message into its delimited JSON input and the rest."""
    lines = request["body"]["messages"][1]["content"].split("\n")
    begins = [i for i, line in enumerate(lines) if line.startswith("<<<BEGIN INPUT ")]
    assert len(begins) == 1, lines
    begin = begins[0]
    boundary = lines[begin].removeprefix("<<<BEGIN INPUT ").removesuffix(">>>")
    assert lines[begin + 2 :] == [f"<<<END INPUT {boundary}>>>"]
    outside = "\n".join(lines[: begin + 1] + lines[begin + 2 :])
    return SentInput(boundary, json.loads(lines[begin + 1]), outside)
