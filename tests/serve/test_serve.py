"""`agentmeta serve`: the official `openai` client against an agent served on a real port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agentmeta import get_model
from agentmeta.agents.builtin import get_agent
from agentmeta.eval import Sample, Suite, evaluate

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn in a thread on a free loopback port, stopped at the end."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def reply(req) -> str:
    """cot's prompt: the sum of the task's numbers, reasoned."""
    import re

    nums = [int(x) for x in re.findall(r"\d+", req.messages[-1].content.split("\n")[0])]
    return f"Adding them up.\nAnswer: {sum(nums)}"


@pytest.fixture
def served() -> Iterator[tuple[Server, Any]]:
    from agentmeta.serve import create_app

    # batching on, with a delay: concurrent requests' calls meet in the model layer's batcher
    model = get_model("mock", outputs=reply, cache=False, batching=True, delay_s=0.2)
    agent, _ = get_agent("cot")
    with Server(create_app(agent, model, name="cot-agent", api_key="sekret", concurrency=8)) as srv:
        yield srv, model


def test_the_openai_client_chats_streams_and_lists_the_model(served) -> None:
    srv, model = served
    client = openai.OpenAI(base_url=srv.url, api_key="sekret")
    assert [m.id for m in client.models.list().data] == ["cot-agent"]
    out = client.chat.completions.create(
        model="cot-agent", messages=[{"role": "user", "content": "What is 2 + 3?"}]
    )
    assert out.choices[0].message.content == "Adding them up.\nAnswer: 5"  # the agent's answer as it is
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0  # what the agent spent
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    # the task is the last user message, whatever came before
    two = client.chat.completions.create(
        model="cot-agent",
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "What is 1 + 1?"},
                  {"role": "assistant", "content": "2"}, {"role": "user", "content": "What is 4 + 4?"}],
    )  # fmt: skip
    assert two.choices[0].message.content.endswith("Answer: 8")
    stream = client.chat.completions.create(
        model="cot-agent", messages=[{"role": "user", "content": "What is 7 + 5?"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (
        text == "Adding them up.\nAnswer: 12"
        and chunks[-1].usage is not None
        and chunks[-1].usage.total_tokens > 0
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_errors_are_openai_shaped_4xx(served) -> None:
    srv, _ = served
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=srv.url, api_key="wrong").chat.completions.create(
            model="cot-agent", messages=[{"role": "user", "content": "hi"}]
        )
    client = openai.OpenAI(base_url=srv.url, api_key="sekret", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="cot-agent", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model="cot-agent", messages=[{"role": "user", "content": "hi"}], n=2)
    import httpx

    big = httpx.post(f"{srv.url}/chat/completions", headers={"Authorization": "Bearer sekret"},
                     json={"messages": [{"role": "user", "content": "x" * 1_100_000}]})  # fmt: skip
    assert big.status_code == 413 and big.json()["error"]["message"].startswith("the request is")


def test_concurrent_requests_are_answered_and_batched_by_the_engine(served) -> None:
    srv, model = served
    client = openai.OpenAI(base_url=srv.url, api_key="sekret")
    tasks = [f"What is {i} + {i}?" for i in range(16)]

    def ask(task: str) -> str:
        out = client.chat.completions.create(model="cot-agent", messages=[{"role": "user", "content": task}])
        return out.choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, tasks))
    assert [a.splitlines()[-1] for a in answers] == [f"Answer: {2 * i}" for i in range(16)]
    assert model.usage.calls == 16
    assert model.provider.backend_calls < 16  # several requests' calls went to the backend together


def test_eval_through_the_server_reproduces_the_agents_own_answers(served) -> None:
    """`evaluate(passthrough, suite, model=openai/<served agent>)` gives the served agent's answers:
    the same per-sample answers as evaluating the agent directly (a greedy agent)."""
    srv, _ = served
    suite = Suite(name="adds", samples=[Sample(id=f"s{i}", input=f"What is {i} + 2?", target=str(i + 2))
                                        for i in range(6)], scorer={"name": "numeric"})  # type: ignore[arg-type]  # fmt: skip
    direct = evaluate("cot", suite, model=get_model("mock", outputs=reply, cache=False), seed=3)
    remote = get_model("openai/cot-agent", base_url=srv.url, api_key="sekret", cache=False)
    through = evaluate("passthrough", suite, model=remote, seed=3)
    assert [r.answer for r in through.records] == [r.answer for r in direct.records]
    assert through.mean == direct.mean == 1.0


def test_a_slow_agent_gets_504_and_a_bad_content_length_400() -> None:
    import httpx

    from agentmeta.serve import create_app

    class Slow:
        def run(self, task_input: str, model: Any) -> str:
            time.sleep(1.5)
            return "late"

    with Server(create_app(Slow(), get_model("mock", cache=False), name="slow", timeout_s=0.3)) as srv:
        late = httpx.post(
            f"{srv.url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert late.status_code == 504 and late.json()["error"]["type"] == "timeout"
        bad = httpx.post(f"{srv.url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                             "seed": "x"})  # fmt: skip
        assert bad.status_code == 400 and "seed" in bad.json()["error"]["message"]


@pytest.mark.embedded
def test_an_archived_candidate_served_on_the_embedded_model_answers_as_it_evaluates(tmp_path) -> None:
    """`agentmeta serve ID --archive A` on the embedded model: `agentmeta eval passthrough` through
    it gives the candidate's own test answers (greedy: batching across requests changes nothing)."""
    from agentmeta.archive import Archive, Candidate
    from agentmeta.cli.options import load_agent
    from agentmeta.eval import load_suite
    from agentmeta.search.campaign import campaign_seeds
    from agentmeta.serve import create_app

    spec = campaign_seeds("graph", ["cot"])[0]
    archive = Archive(tmp_path / "a.db")
    cid = archive.add(Candidate(kind=spec.kind, name="the winner", thought=spec.thought, source=spec.source))
    agent, name, _ = load_agent(cid[:8], str(tmp_path / "a.db"))
    model = get_model("smollm2")
    suite = load_suite("rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false", split="test", limit=6)
    direct = evaluate(agent, suite, model=model, seed=3)
    with Server(create_app(agent, model, name="winner", api_key="k", concurrency=6)) as srv:
        remote = get_model("openai/winner", base_url=srv.url, api_key="k", cache=False)
        through = evaluate("passthrough", suite, model=remote, seed=3, concurrency=6)
    assert [r.outcome for r in through.records] == ["scored"] * 6
    assert [r.answer for r in through.records] == [r.answer for r in direct.records]
    assert [r.score for r in through.records] == [r.score for r in direct.records]
