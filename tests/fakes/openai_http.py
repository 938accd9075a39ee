"""A local fake of OpenAI's HTTP APIs that the pipeline backend uses: transcription, responses, speech.

A real HTTP server on 127.0.0.1, so the providers reach it through the official SDK with
`AsyncOpenAI(base_url=fake.base_url)` exactly as they reach api.openai.com::

    async with FakeOpenAIHttp().running() as api:
        api.transcripts.append("what time is it")
        api.replies.append([{"text": "It is ten. "}, {"tool": "end_call", "arguments": "{}"}])
        ...

- `POST /v1/audio/transcriptions` (multipart): answers the next scripted transcript, as SSE
  `transcript.text.delta` events and a final `transcript.text.done` when `stream=true`, else
  JSON `{"text": …}`; the uploaded WAV is kept.
- `POST /v1/responses` (`stream: true`): streams the next scripted reply as the Responses API
  does (`response.created`, `response.output_text.delta`…, `response.output_item.done` for
  each function call, `response.completed`), one SSE event per `delay_s`.
- `POST /v1/audio/speech` (`response_format: "pcm"`): streams 24 kHz PCM16, `ms_per_char` of a
  tone per input character, in 100 ms pieces.

Every request is recorded (path, JSON body or form fields, Authorization). Without a bearer key
the answer is 401, like the real API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.server import serve_in_process

__all__ = ["FakeOpenAIHttp", "Recorded"]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    authorization: str
    files: dict[str, bytes] = field(default_factory=dict)


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def tone_pcm24k(ms: float, freq: float = 440.0) -> bytes:
    n = int(24 * ms)
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 24000))) for i in range(n))


class FakeOpenAIHttp:
    def __init__(self, *, delay_s: float = 0.0, ms_per_char: float = 60.0) -> None:
        self.delay_s = delay_s
        self.ms_per_char = ms_per_char
        self.transcripts: list[str] = []
        self.replies: list[list[dict[str, str]]] = []
        self.requests: list[Recorded] = []
        self.port = 0
        self.speech_cancelled = 0  # speech streams the client dropped before the end

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def of(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeOpenAIHttp]:
        app = Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/audio/speech", self._speech, methods=["POST"]),
            ]
        )
        async with serve_in_process(app) as port:
            self.port = port
            yield self

    def _auth(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth if auth.startswith("Bearer ") and len(auth) > 7 else None

    @staticmethod
    def _unauthorized() -> Response:
        error = {"error": {"message": "Missing bearer key", "type": "invalid_request_error", "code": None}}
        return JSONResponse(error, status_code=401)

    async def _transcriptions(self, request: Request) -> Response:
        auth = self._auth(request)
        if auth is None:
            return self._unauthorized()
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        async with request.form() as form:  # closes the uploads' temporary files
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields[key] = value
                else:
                    files[key] = await value.read()
        self.requests.append(Recorded("transcriptions", fields, auth, files))
        text = self.transcripts.pop(0) if self.transcripts else ""
        if fields.get("stream") != "true":
            return JSONResponse({"text": text})

        async def events() -> AsyncIterator[bytes]:
            for word in text.split(" "):
                await asyncio.sleep(self.delay_s)
                yield _sse({"type": "transcript.text.delta", "delta": word + " "})
            yield _sse({"type": "transcript.text.done", "text": text})

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _responses(self, request: Request) -> Response:
        auth = self._auth(request)
        if auth is None:
            return self._unauthorized()
        body = await request.json()
        self.requests.append(Recorded("responses", body, auth))
        script = self.replies.pop(0) if self.replies else [{"text": "OK."}]

        async def events() -> AsyncIterator[bytes]:
            seq = 0

            def ev(event: dict[str, Any]) -> bytes:
                nonlocal seq
                seq += 1
                return _sse({**event, "sequence_number": seq})

            response = {"id": "resp_fake", "object": "response", "status": "in_progress", "output": []}
            yield ev({"type": "response.created", "response": response})
            for index, step in enumerate(script):
                await asyncio.sleep(self.delay_s)
                if "text" in step:
                    yield ev(
                        {
                            "type": "response.output_text.delta",
                            "item_id": "msg_fake",
                            "output_index": 0,
                            "content_index": 0,
                            "delta": step["text"],
                            "logprobs": [],
                        }
                    )
                else:
                    item = {
                        "type": "function_call",
                        "id": f"fc_{index}",
                        "call_id": f"call_{index}",
                        "name": step["tool"],
                        "arguments": step.get("arguments", "{}"),
                        "status": "completed",
                    }
                    yield ev({"type": "response.output_item.done", "output_index": index + 1, "item": item})
            yield ev({"type": "response.completed", "response": {**response, "status": "completed"}})

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _speech(self, request: Request) -> Response:
        auth = self._auth(request)
        if auth is None:
            return self._unauthorized()
        body = await request.json()
        self.requests.append(Recorded("speech", body, auth))
        pcm = tone_pcm24k(len(body.get("input", "")) * self.ms_per_char)

        async def audio() -> AsyncIterator[bytes]:
            step = 4800  # 100 ms
            try:
                for i in range(0, len(pcm), step):
                    await asyncio.sleep(self.delay_s)
                    yield pcm[i : i + step]
            except BaseException:
                self.speech_cancelled += 1
                raise

        return StreamingResponse(audio(), media_type="application/octet-stream")
