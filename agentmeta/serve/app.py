"""An agent behind the OpenAI chat-completions API (`agentmeta serve`).

`create_app(agent, model)` returns an ASGI app with `GET /v1/models` (the one served agent) and
`POST /v1/chat/completions`: the last user message is the task input, the agent's answer is the
reply, and `usage` counts every token the agent spent on the request (all of its model calls).
With `"stream": true` the reply comes as server-sent events in the OpenAI chunk format (a role
chunk, the answer, a finish chunk, a usage chunk when `stream_options.include_usage`, then
`[DONE]`). Requests run in a pool of `concurrency` threads of their own (more wait their turn), so
their model calls meet in the model layer and are batched by the engine. An answer past
`timeout_s` gets 504; the agent's thread finishes in the background (Python cannot stop it).

Seeding: each request's model calls are seeded by the request's `seed` (default: the server's
`seed`) and the task, as an evaluation seeds a sample's calls, so the same request gets the same
answer; greedy agents answer exactly as when evaluated directly.

Errors are OpenAI-shaped JSON (`{"error": {"message", "type", "code"}}`): 401 without the right
`--api-key`, 413 past `max_request_bytes`, 400 for a body that is not a chat request (no user
message, `n` > 1, bad JSON), 404 for another model name, 504 past `timeout_s`, 502 when the model
or sandbox failed (infrastructure), 500 when the agent itself failed.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentmeta.errors import InfrastructureError, require

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and message."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
    ):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


def task_of(body: Any, served: str) -> str:
    """The task input of a chat request: its last user message's text; `RequestError` otherwise."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with `messages`")
    if body.get("model") not in (None, "", served):
        raise RequestError(404, f"model {body.get('model')!r} is not served here; this server serves {served!r}",
                           code="model_not_found")  # fmt: skip
    if body.get("n") not in (None, 1):
        raise RequestError(400, "n must be 1: an agent gives one answer per request")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` must be a non-empty list of {role, content}")
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content
            break
    raise RequestError(400, "no user message with text: the last user message is the agent's task")


def create_app(
    agent: Any,
    model: Any,
    *,
    name: str,
    api_key: str | None = None,
    seed: int = 0,
    concurrency: int = 16,
    max_request_bytes: int = 1_000_000,
    timeout_s: float = 600.0,
) -> Any:
    """The ASGI app serving `agent` (anything with `run(task_input, model)`) on `model` as `name`."""
    fastapi = require("fastapi", "pip install 'agentmeta[ui]'", "agentmeta serve (FastAPI)")
    from fastapi.responses import JSONResponse, StreamingResponse

    from agentmeta.eval.runner import SampleModel

    app = fastapi.FastAPI(title=f"agentmeta: {name}", docs_url=None, redoc_url=None, openapi_url=None)
    # The agents' own threads: `concurrency` at once, whatever the event loop's default executor is.
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agentmeta-serve")
    created = int(time.time())

    def error(e: RequestError) -> Any:
        return JSONResponse(
            {"error": {"message": str(e), "type": e.kind, "code": e.code}}, status_code=e.status
        )

    def check_key(request: Any) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise RequestError(401, "missing or wrong API key (Authorization: Bearer <key>)",
                               kind="authentication_error", code="invalid_api_key")  # fmt: skip

    def run(task: str, request_seed: int | None) -> tuple[str, Any]:
        sample_id = hashlib.sha256(task.encode()).hexdigest()[:16]
        handle = SampleModel(
            model, seed=seed if request_seed is None else int(request_seed), sample_id=sample_id
        )
        answer = agent.run(task, handle)
        if handle.infra_error is not None:
            raise InfrastructureError(handle.infra_error)
        return str(answer), handle.usage

    @app.get("/v1/models")
    async def models(request: fastapi.Request) -> Any:
        try:
            check_key(request)
        except RequestError as e:
            return error(e)
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "agentmeta"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: fastapi.Request) -> Any:
        try:
            check_key(request)
            try:
                size = int(request.headers.get("content-length") or 0)
            except ValueError:
                raise RequestError(400, "Content-Length is not a number") from None
            if size > max_request_bytes:
                raise RequestError(413, f"the request is {size} bytes, over the limit of {max_request_bytes}")
            raw = await request.body()
            if len(raw) > max_request_bytes:
                raise RequestError(413, f"the request is over the limit of {max_request_bytes} bytes")
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise RequestError(400, "the body is not JSON") from None
            task = task_of(body, name)
            seed_in = body.get("seed")
            if seed_in is not None and (not isinstance(seed_in, int) or isinstance(seed_in, bool)):
                raise RequestError(400, f"seed must be an integer; got {seed_in!r}")
            loop = asyncio.get_running_loop()
            try:
                answer, usage = await asyncio.wait_for(
                    loop.run_in_executor(pool, run, task, seed_in), timeout_s
                )
            except asyncio.TimeoutError:  # TimeoutError from 3.11; a class of its own on 3.10
                raise RequestError(
                    504, f"the agent did not answer within {timeout_s:g} s", kind="timeout"
                ) from None
            except InfrastructureError as e:
                raise RequestError(502, f"the model or sandbox failed: {e}", kind="server_error") from None
            except Exception as e:  # noqa: BLE001 - the agent's own failure, reported to the client
                log.warning("the agent failed on a request: %s", e, exc_info=True)
                raise RequestError(
                    500, f"the agent failed: {type(e).__name__}: {e}", kind="server_error"
                ) from None
        except RequestError as e:
            return error(e)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        counts = {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }  # fmt: skip
        if not body.get("stream"):
            return {
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": counts,
            }  # fmt: skip
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(cid, name, answer, counts, include_usage), media_type="text/event-stream"
        )

    return app


async def _chunks(
    cid: str, name: str, answer: str, usage: dict[str, int], include_usage: bool
) -> AsyncIterator[str]:
    """The answer as OpenAI chat-completion chunks (server-sent events)."""
    now = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(data)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for start in range(0, len(answer), 64):
        yield chunk({"content": answer[start : start + 64]})
    yield chunk({}, "stop")
    if include_usage:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": now,
            "model": name,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"
