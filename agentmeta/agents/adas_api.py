"""The ADAS-style helper API that code agents call: `Info`, `LLMAgentBase`, `AgentSystem`.

This file is stdlib-only: its source is sent as the preamble of every code-agent job and runs
inside the sandbox, where the worker provides `llm(prompt, **sampling) -> dict` (the model call
travels over a pipe to the parent). Agents written for ADAS (`forward(self, taskInfo)` using
`LLMAgentBase(output_fields, agent_name, role=..., temperature=...)` and `Info` records) run
with no change to their body.
"""

import json
import random
import re
from collections import namedtuple

Info = namedtuple("Info", ["name", "author", "content", "iteration_idx"])

# Knobs the parent may override per run (set by the job before the candidate code runs).
AGENT_MAX_TOKENS = 256
FIELD_MAX_CHARS = {"thinking": 400, "answer": 120}
DEFAULT_FIELD_MAX_CHARS = 300

# Agent ids appear in later prompts ("... by Chain-of-Thought Agent 3f09a1:"), so they must replay:
# a seeded run sets AGENT_ID_SEED (derived from the run seed and the sample) before this preamble,
# and each new agent takes the next id from it. Unseeded runs draw them from the OS.
_AGENT_IDS = random.Random(globals().get("AGENT_ID_SEED"))

FORMAT_INST = "Reply with a JSON object with the fields {names}, each a plain string.\n{fields}"


def _field_desc(field):
    if field == "thinking":
        return "step-by-step reasoning"
    if field == "answer":
        return "the final answer alone, as short as possible"
    if field == "feedback":
        return "what is wrong with the answer, if anything"
    if field == "correct":
        return "True if the answer is correct, else False"
    return field.replace("_", " ")


def _parse_json_reply(text, fields):
    """Extract the fields from a JSON reply, tolerating prose around it and truncation."""
    data = None
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        match = re.search(r"\{.*\}", text or "", flags=re.S)
        if match:
            try:
                data = json.loads(match.group(0))
            except ValueError:
                data = None
    if not isinstance(data, dict):
        data = {}
        for f in fields:
            m = re.search(r'"' + re.escape(f) + r'"\s*:\s*"((?:[^"\\]|\\.)*)', text or "", flags=re.S)
            if m:
                try:
                    data[f] = json.loads('"' + m.group(1) + '"')
                except ValueError:
                    data[f] = m.group(1)
    if not data and fields:
        data = {fields[-1]: (text or "").strip()}
    return {f: ("" if data.get(f) is None else str(data.get(f))) for f in fields}


class LLMAgentBase:
    """One LLM call with a role, a temperature and named output fields, returning `Info`s."""

    def __init__(self, output_fields, agent_name, role="helpful assistant", model=None, temperature=0.5):
        self.output_fields = list(output_fields)
        self.agent_name = agent_name
        self.role = role
        self.model = model
        self.temperature = temperature
        self.id = f"{_AGENT_IDS.getrandbits(24):06x}"

    def generate_prompt(self, input_infos, instruction):
        fields = "\n".join(f"- {f}: {_field_desc(f)}" for f in self.output_fields)
        names = ", ".join(self.output_fields)
        system = f"You are a {self.role}.\n\n" + FORMAT_INST.format(names=names, fields=fields)
        parts = []
        for info in input_infos:
            name, author, content, iteration_idx = tuple(info)
            if author == self.__repr__():
                author += " (yourself)"
            if name == "task":
                parts.append(f"# Your Task:\n{content}\n\n")
            elif iteration_idx != -1:
                parts.append(f"### {name} #{iteration_idx + 1} by {author}:\n{content}\n\n")
            else:
                parts.append(f"### {name} by {author}:\n{content}\n\n")
        return system, "".join(parts) + instruction

    def _schema(self):
        props = {
            f: {"type": "string", "maxLength": FIELD_MAX_CHARS.get(f, DEFAULT_FIELD_MAX_CHARS)}
            for f in self.output_fields
        }
        return {
            "type": "object",
            "properties": props,
            "required": self.output_fields,
            "additionalProperties": False,
        }

    def query(self, input_infos, instruction, iteration_idx=-1):
        system, prompt = self.generate_prompt(input_infos, instruction)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        response = llm(  # noqa: F821 - provided by the sandbox worker
            messages, temperature=self.temperature, max_tokens=AGENT_MAX_TOKENS, json_schema=self._schema()
        )
        values = _parse_json_reply(response["texts"][0], self.output_fields)
        return [Info(f, self.__repr__(), values[f], iteration_idx) for f in self.output_fields]

    def __repr__(self):
        return f"{self.agent_name} {self.id}"

    def __call__(self, input_infos, instruction, iteration_idx=-1):
        return self.query(input_infos, instruction, iteration_idx=iteration_idx)


class AgentSystem:
    """The object a candidate's `forward(self, taskInfo)` is bound to."""


def __agentmeta_run(task_text, forward_fn):
    AgentSystem.forward = forward_fn
    agent = AgentSystem()
    result = agent.forward(Info("task", "User", task_text, -1))
    if isinstance(result, Info):
        result = result.content
    if isinstance(result, (list, tuple)) and result and isinstance(result[0], Info):
        result = result[-1].content
    if not isinstance(result, (str, int, float)):
        raise TypeError(f"forward() must return an Info or a string, got {type(result).__name__}")
    return str(result)
