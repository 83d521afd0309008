"""Graph nodes that adapt their compute to the input: ``bandit`` and ``tree_search``.

``bandit`` (after Meta-Reasoner's bandit over reasoning strategies): the node answers the task
with one of its ``arms`` (reasoning strategies of `ARMS`: ``direct``, ``cot``, ``sample_vote``,
``program_of_thought``, ``reflect``), chosen per input by Thompson sampling or UCB over its
``stats`` (per arm, reward sum and pulls). The statistics are learned on the train split
(`agentmeta.search.adaptive.learn_bandit`, the scorer as reward) and frozen in the spec, so
validation and test never update them. With ``pulls`` > 1 it is also adaptive within one input:
after the first arm it tries the next one the policy ranks, and stops as soon as an answer agrees
with an earlier one (no target involved); the answer is the majority of the arms tried. The
choice is seeded by the input, so a run replays. Arms answer the task itself (``{input}``), with
the node's role and completion budget; it is not contextual (the statistics do not depend on
features of the input).

``tree_search`` (AB-MCTS at inference, Sakana AI's ``treequest``, algorithm AB-MCTS-A): up to
``n`` answers, the first at the node's own temperature (greedy for a chain-of-thought node), the
rest sampled; at each step the algorithm decides, by Thompson sampling over the scores so far,
between going wider (a new answer sampled from the node's prompt) and going deeper (a refinement of
an existing answer, asked to check it and correct it). Every answer is scored by a ``verifier``
that never sees the target: ``agreement`` (the share of earlier answers it agrees with), ``self``
(the model's own yes/no check of the answer) or ``python`` (agreement with a program-of-thought
computation of the task, run in the sandbox). The answer is the one with the largest total
verifier score. Answers agree when they share `answer_key` (an answer in words is keyed by its last
number, as a numeric scorer reads it). treequest draws from numpy's global generator: each input gets its own seeded
state, swapped in under a lock, so concurrent runs replay exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
from collections import Counter
from typing import Any

from agentmeta.agents.answers import extract_answer, vote_key
from agentmeta.agents.graph import (
    ANSWER_HINT,
    COMMON_FIELDS,
    POT_CODE,
    GraphAgent,
    GraphSpec,
    Node,
    _render,
    pot_prompt,
    register_node,
    spec_from_steps,
)
from agentmeta.errors import require

ARMS: dict[str, list[dict[str, Any]]] = {
    "direct": [{"type": "llm", "instruction": "Give only the final answer, without explanation."}],
    "cot": [{"type": "llm", "instruction": "Think step by step, then give the final answer."}],
    "sample_vote": [{"type": "sample_vote", "instruction": "Think step by step, then give the final answer."}],
    "program_of_thought": [{"type": "program_of_thought"}],
    "reflect": [{"type": "llm", "instruction": "Think step by step, then give the final answer."}, {"type": "reflect"}],
}
"""The reasoning strategies a bandit chooses from, as the meta-agent's step lists (`spec_from_steps`)."""


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def answer_key(text: str) -> str:
    """What two answers must share to agree: `vote_key` of the extracted answer, except that an
    answer in words with numbers in it ("so our answer is 28") is keyed by its last number, as a
    numeric scorer reads it (small models rarely end with a bare `Answer:` line)."""
    answer = extract_answer(text)
    key = vote_key(answer)
    numbers = _NUMBER.findall(answer)
    if numbers and " " in answer.strip():
        return vote_key(numbers[-1])
    return key


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


# ----------------------------------------------------------------------------- bandit


def arm_spec(arm: str, node: Node) -> GraphSpec:
    """Arm `arm` of a bandit node as a graph of its own (the node's role and completion budget)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    steps = [{**step, "role": node.role} for step in ARMS[arm]]
    spec = spec_from_steps(f"{node.id}:{arm}", "", steps)
    nodes = [n.model_copy(update={"max_tokens": node.max_tokens, "model": node.model}) for n in spec.nodes]
    return spec.model_copy(update={"nodes": nodes})


def _arm_agent(agent: GraphAgent, node: Node, arm: str) -> GraphAgent:
    cache: dict[tuple[str, str], GraphAgent] = agent.__dict__.setdefault("_arm_agents", {})
    key = (node.id, arm)
    if key not in cache:
        cache[key] = GraphAgent(arm_spec(arm, node))
    return cache[key]


def rank_arms(arms: list[str], stats: dict[str, list[float]], policy: str, rng: random.Random) -> list[str]:
    """Arms in the order the policy would pull them: Thompson draws from each arm's Beta(1 + reward,
    1 + pulls - reward) posterior; UCB1 ranks by mean + sqrt(2 ln N / pulls) (an unpulled arm
    first). Ties keep the order of `arms`."""
    total = sum((list(stats.get(a) or [0.0, 0.0]) + [0.0, 0.0])[1] for a in arms)
    values = []
    for a in arms:
        reward, pulls = (list(stats.get(a) or [0.0, 0.0]) + [0.0, 0.0])[:2]
        if policy == "ucb":
            v = math.inf if pulls <= 0 else reward / pulls + math.sqrt(2 * math.log(max(total, 1.0)) / pulls)
        else:
            v = rng.betavariate(1.0 + reward, 1.0 + max(pulls - reward, 0.0))
        values.append(v)
    order = sorted(range(len(arms)), key=lambda k: (-values[k], k))
    return [arms[k] for k in order]


def _check_bandit(node: Node) -> None:
    bad = [a for a, v in node.stats.items() if len(v) != 2 or not 0 <= v[0] <= v[1]]
    if bad:
        raise ValueError(f"bandit node {node.id!r}: stats are [reward sum, pulls] with 0 <= reward <= pulls; not for {bad}")
    unknown = [a for a in node.arms if a not in ARMS]
    if unknown:
        raise ValueError(f"bandit node {node.id!r}: unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    if len(set(node.arms)) < 2:
        raise ValueError(f"bandit node {node.id!r} needs at least two different arms")


def run_bandit(agent: GraphAgent, node: Node, state: Any, index: int) -> str:
    rng = random.Random(_seed("bandit", node.id, state["input"]))
    order = rank_arms(list(node.arms), node.stats, node.policy, rng)
    tried: list[tuple[str, str]] = []
    for arm in order[: node.pulls]:
        answer, _ = _arm_agent(agent, node, arm).trace(state["input"], state["model"])
        agrees = any(answer_key(answer) and answer_key(answer) == answer_key(a) for _, a in tried)
        tried.append((arm, answer))
        if agrees:
            break
    counts = Counter(answer_key(a) for _, a in tried if answer_key(a))
    best = max(counts.values(), default=0)
    answer = next((a for _, a in tried if answer_key(a) and counts[answer_key(a)] == best), tried[0][1])
    return f"Arms: {', '.join(arm for arm, _ in tried)}\nAnswer: {answer}"


# ----------------------------------------------------------------------------- tree_search

_NP_LOCK = threading.Lock()


class _Seeded:
    """numpy's global generator, swapped to this input's own state for each treequest call."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self.np = np
        with _NP_LOCK:
            saved = np.random.get_state()
            np.random.seed(seed % 2**32)
            self.state = np.random.get_state()
            np.random.set_state(saved)

    def __call__(self, fn: Any, *args: Any) -> Any:
        with _NP_LOCK:
            saved = self.np.random.get_state()
            self.np.random.set_state(self.state)
            try:
                return fn(*args)
            finally:
                self.state = self.np.random.get_state()
                self.np.random.set_state(saved)


def _refine_prompt(task: str, answer: str) -> str:
    return (
        f"Task: {task}\n\nA previous attempt:\n{answer}\n\n"
        f"Check each step of the attempt. If there is a mistake, correct it; otherwise keep it. {ANSWER_HINT}"
    )


class _Verifier:
    """Scores an answer in [0, 1] without the target."""

    def __init__(self, agent: GraphAgent, node: Node, state: Any) -> None:
        self.agent, self.node, self.state = agent, node, state
        self._pot: str | None = None

    def score(self, key: str, text: str, earlier: list[str]) -> float:
        how = self.node.verifier
        if how == "agreement":
            return (sum(k == key for k in earlier if k) + 0.5) / (len(earlier) + 1)
        if not key:
            return 0.0
        if how == "self":
            check = self.agent._call(
                self.state, self.node.model_copy(update={"demos": []}),
                f"Task: {self.state['input']}\n\nProposed answer: {extract_answer(text)}\n\n"
                "Is the proposed answer correct? Reply with yes or no.",
                temperature=0.0,
            )[0].strip().lower()  # fmt: skip
            return 1.0 if check.startswith("yes") else 0.0 if check.startswith("no") else 0.5
        return 1.0 if self.computed() == key else 0.5 if not self.computed() else 0.0

    def computed(self) -> str:
        """The program-of-thought answer to the task (computed once): '' when it fails."""
        if self._pot is None:
            from agentmeta.sandbox import default_sandbox

            expr_node = self.node.model_copy(update={"type": "llm", "demos": []})
            expr = self.agent._call(self.state, expr_node, pot_prompt().format(input=self.state["input"]),
                                    temperature=0.0)[0]  # fmt: skip
            res = default_sandbox().run(POT_CODE, entry="tool", args=[self.state["input"], expr])
            value = str(res.value) if res.ok else ""
            self._pot = answer_key(value) if value.startswith("Answer:") else ""
        return self._pot


def run_tree_search(agent: GraphAgent, node: Node, state: Any, index: int) -> str:
    treequest = require("treequest", "pip install 'agentmeta[tree]'", "the tree_search node's treequest")
    algo = treequest.ABMCTSA()
    seeded = _Seeded(_seed("tree_search", node.id, state["input"]))
    tree = seeded(algo.init_tree)
    prompt = _render(node.prompt, state)
    temperature = node.temperature if node.temperature > 0 else 0.8
    verifier = _Verifier(agent, node, state)
    found: list[tuple[str, str, float]] = []  # (key, text, score)
    for _ in range(node.n):
        tree, trial = seeded(algo.ask, tree, ["answer"])
        parent = trial.parent_state
        if parent is None:  # the first answer at the node's own temperature (greedy for a cot node), then sampled
            text = agent._call(state, node, prompt, temperature=temperature if found else node.temperature)[0]
        else:
            plain = node.model_copy(update={"demos": []})  # a refinement is not the task the demonstrations show
            text = agent._call(state, plain, _refine_prompt(state["input"], parent["text"]), temperature=temperature)[0]
        key = answer_key(text)
        score = verifier.score(key, text, [k for k, _, _ in found])
        found.append((key, text, score))
        tree = seeded(algo.tell, tree, trial.trial_id, ({"text": text}, score))
    totals: dict[str, float] = {}
    for key, _, score in found:
        if key:
            totals[key] = totals.get(key, 0.0) + score
    if not totals:
        return found[-1][1] if found else ""
    best = max(totals, key=lambda k: (totals[k], -next(i for i, f in enumerate(found) if f[0] == k)))
    text = max((f for f in found if f[0] == best), key=lambda f: f[2])[1]
    answer = extract_answer(text)
    return "Answer: " + (best if best != vote_key(answer) and _NUMBER.fullmatch(best) else answer)


def _check_tree_search(node: Node) -> None:
    if node.n < 1:
        raise ValueError(f"tree_search node {node.id!r} needs n >= 1 answers")


register_node(
    "bandit", run_bandit, ("type", "role", "max_tokens", "model", "arms", "policy", "pulls"),
    "a reasoning strategy chosen per input by Thompson sampling or UCB, statistics learned on train",
    check=_check_bandit,
)  # fmt: skip
register_node(
    "tree_search", run_tree_search, (*COMMON_FIELDS, "demos", "n", "verifier"),
    "AB-MCTS (treequest) over answers: wider or deeper, scored by a verifier without the target",
    takes_demos=True, check=_check_tree_search,
)  # fmt: skip

__all__ = ["ARMS", "arm_spec", "rank_arms", "run_bandit", "run_tree_search"]
