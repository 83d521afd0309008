"""The OpenAI-compatible provider against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from agentmeta import get_model
from agentmeta.errors import ModelCallError, ModelRequestError
from tests.servers import free_port, stop


class _Flaky(BaseHTTPRequestHandler):
    """Fails with 503 on the first `fail` requests, then answers like a chat server."""

    fail = 2
    seen = 0

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen += 1
        if type(self).seen <= type(self).fail:
            self.send_response(503)
            self.end_headers()
            return
        reply = {
            "choices": [
                {"message": {"content": "echo " + body["messages"][-1]["content"]}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_retries_on_5xx_then_succeeds():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        m = get_model("openai/flaky", base_url=url, backoff_s=0.01, cache=False)
        r = m.generate("hi")
        assert r.text == "echo hi" and r.prompt_tokens == 3
        assert _Flaky.seen == 3
    finally:
        server.shutdown()


def test_server_down_gives_clear_error_naming_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    m = get_model("openai/nothing", base_url=url, retries=2, backoff_s=0.01, cache=False)
    with pytest.raises(ModelCallError) as e:
        m.generate("hi")
    assert url in str(e.value) and "3 attempts" in str(e.value)


class _Status(BaseHTTPRequestHandler):
    """Answers every request with the status code named in the user message."""

    seen = 0

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen += 1
        data = b'{"error": {"message": "no"}}'
        self.send_response(int(body["messages"][-1]["content"]))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_4xx_blames_the_request_except_setup_and_retryable_codes():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        m = get_model("openai/status", base_url=url, retries=1, backoff_s=0.01, cache=False)
        for code in (400, 413, 422):
            _Status.seen = 0
            with pytest.raises(ModelRequestError, match=f"rejected the request: HTTP {code}"):
                m.generate(str(code))
            assert _Status.seen == 1  # not retried
        for code in (401, 404, 501):
            with pytest.raises(ModelCallError, match=f"HTTP {code}"):
                m.generate(str(code))
        for code in (408, 429, 503):
            _Status.seen = 0
            with pytest.raises(ModelCallError, match="after 2 attempts"):
                m.generate(str(code))
            assert _Status.seen == 2
    finally:
        server.shutdown()


def test_cache_identity_is_url_model_and_cache_tag():
    from agentmeta.models.openai import OpenAIProvider

    a = OpenAIProvider("m", base_url="http://127.0.0.1:9")
    b = OpenAIProvider("m", base_url="http://127.0.0.1:9", cache_tag="ckpt-2")
    c = OpenAIProvider("m", base_url="http://127.0.0.1:9/v1")
    try:
        assert a.identity() == c.identity() != b.identity()
        assert "ckpt-2" in b.identity()
    finally:
        for p in (a, b, c):
            p.close()


@pytest.mark.server
@pytest.mark.embedded
def test_transformers_serve_through_openai_provider(dense_model_dir: Path, tmp_path: Path):
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        pytest.fail("transformers CLI missing: install the `serve` extra")
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    (tmp_path / "hub").mkdir()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [str(exe), "serve", str(dense_model_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(
                    "transformers serve did not start: " + (tmp_path / "serve.log").read_text()[-2000:]
                )
            time.sleep(0.5)
        m = get_model(f"openai/{dense_model_dir}", base_url=f"http://127.0.0.1:{port}", cache=False)
        r = m.generate("What is 2+3?", max_tokens=16)
        assert "5" in r.text
        assert r.prompt_tokens > 0 and r.finish_reasons[0] in ("stop", "length")
        two = m.generate("Name a fruit.", max_tokens=8, n=2)  # the server ignores n: asked again
        assert len(two.texts) == 2
    finally:
        stop(proc, log, timeout_s=20)
    assert proc.poll() is not None
