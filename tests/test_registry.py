"""The one registry: lookups, clear errors, plugins through entry points, suites from YAML anywhere."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from agentmeta.errors import ConfigError
from agentmeta.registry import CATEGORIES, Registry, registry


def test_every_category_lists_its_builtins_with_their_origin() -> None:
    names = {c: registry.names(c) for c in CATEGORIES}
    assert {"smollm2", "hf", "openai", "vllm", "mock"} <= set(names["provider"])
    assert {"gsm8k", "mmlu", "rg", "drop-lite"} <= set(names["suite"])
    assert {"exact", "numeric", "code"} <= set(names["scorer"])
    assert {"code", "graph", "prompt", "conductor"} <= set(names["kind"])
    assert {"direct", "cot", "cot-sc"} <= set(names["agent"])
    assert "meta-agent" in names["strategy"]
    assert {e.origin for e in registry.entries("scorer") if e.name == "exact"} == {"agentmeta"}


def test_unknown_names_are_one_line_errors_listing_what_exists() -> None:
    with pytest.raises(ConfigError) as err:
        registry.get("strategy", "nope")
    assert "unknown search strategy 'nope'; registered: " in str(err.value) and "meta-agent" in str(err.value)
    with pytest.raises(ConfigError, match="unknown registry category"):
        registry.get("widget", "x")
    from agentmeta.models import get_model

    with pytest.raises(ConfigError, match=r"valid forms: smollm2\[:<lora>\]\[\?dtype=\.\.\.&speculate=N\], hf/<dir or hub id>\[:<lora>\]"):
        get_model("nope/x")


def test_a_name_cannot_be_taken_twice_silently() -> None:
    reg = Registry(plugins=False)
    reg.add("scorer", "mine", lambda: None)
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("scorer", "mine", lambda: None)
    reg.add("scorer", "mine", print, replace=True)
    assert reg.get("scorer", "mine") is print


def test_plugins_load_from_the_entry_point_group_with_their_origin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = tmp_path / "demo_registry_plugin.py"
    module.write_text(
        "from agentmeta.registry import register\n"
        "@register('scorer', 'always-one')\n"
        "def always_one():\n"
        "    '''Every answer scores 1.'''\n"
        "    from agentmeta.eval.types import Score\n"
        "    return lambda answer, sample: Score(value=1.0)\n"
    )
    broken = tmp_path / "broken_registry_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        metadata.EntryPoint(name="demo", value="demo_registry_plugin", group="agentmeta.plugins"),
        metadata.EntryPoint(name="broken", value="broken_registry_plugin", group="agentmeta.plugins"),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: eps if group == "agentmeta.plugins" else [])
    reg = Registry()
    # loading plugins registers into the process-wide registry's decorator target; use it here
    import agentmeta.registry as registry_module

    monkeypatch.setattr(registry_module, "registry", reg)
    entry = reg.entry("scorer", "always-one")
    assert entry.origin.endswith("(entry point demo)") and entry.doc == "Every answer scores 1."
    assert any("broken" in m and "boom" in m for m in reg.plugin_errors)  # a broken plugin is skipped


def test_suite_defined_in_a_yaml_file_anywhere(tmp_path: Path) -> None:
    from agentmeta.eval import evaluate, load_suite

    data = tmp_path / "data" / "adds.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps({"q": f"What is {i} + 1?", "a": str(i + 1)}) + "\n" for i in range(30)))
    (tmp_path / "adds.yaml").write_text(
        "description: additions from a file\n"
        "loader: file\n"
        "options: {path: data/adds.jsonl, input: q, target: a, train: 0.0, validation: 0.5}\n"
        "scorer: {name: numeric}\n"
    )
    spec = str(tmp_path / "adds.yaml")
    val, test = load_suite(spec), load_suite(spec, split="test")
    assert len(val) + len(test) == 30 and val.scorer.name == "numeric" and val.description == "additions from a file"
    result = evaluate(lambda q, m: "Answer: " + str(int(q.split()[2]) + 1), val, model="mock")
    assert result.mean == 1.0
    # a YAML with the same fields as the shipped ones, pointing at a built-in loader
    (tmp_path / "small-gpqa.yaml").write_text("loader: gpqa\nsizes: {validation: 8, train: 4, test: 16}\nscorer: {name: choice}\n")
    small = load_suite(str(tmp_path / "small-gpqa.yaml"), split="test")
    assert len(small) == 16 and small.sizes.validation == 8
    (tmp_path / "bad.yaml").write_text("loader: nope\n")
    with pytest.raises(ConfigError, match="unknown loader 'nope'"):
        load_suite(str(tmp_path / "bad.yaml"))


def test_register_suite_from_python_gets_splits_and_checks() -> None:
    from agentmeta.eval import Sample, load_suite
    from agentmeta.eval.suites import register_suite

    def load(options: dict) -> list[Sample]:
        rows = [Sample(id=f"m{i}", input=f"Calculate {i} * 2.", target=str(2 * i), metadata={"expression": f"{i} * 2"}) for i in range(40)]
        rows[3] = rows[3].model_copy(update={"target": "7"})  # a wrong label: dropped by the checks
        return rows

    register_suite("times-two-test", load, scorer="numeric", sizes={"validation": 10, "train": 10, "test": "rest"})
    try:
        parts = {s: load_suite("times-two-test", split=s) for s in ("train", "validation", "test")}
        assert sum(len(p) for p in parts.values()) == 39 and parts["test"].dropped == {"arithmetic": 1}
        assert "times-two-test" in registry.names("suite")
    finally:
        registry.remove("suite", "times-two-test")
