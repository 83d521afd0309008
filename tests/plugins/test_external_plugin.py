"""A real third-party package, built and installed, extends agentmeta through the entry point only.

The package is the example of docs/guides/plugins.md, verbatim: the test builds it with pip
into a private folder (the test environment is not changed) and runs the agentmeta command with
that folder on PYTHONPATH, so the plugin is found through `importlib.metadata` like any installed
distribution.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _readme_example() -> tuple[str, str]:
    section = (ROOT / "docs" / "guides" / "plugins.md").read_text()
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    toml = re.findall(r"```toml\n(.*?)```", section, flags=re.S)[0]
    return python, toml


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python, toml = _readme_example()
    src = tmp_path_factory.mktemp("agentmeta-sums")
    (src / "agentmeta_sums").mkdir()
    (src / "agentmeta_sums" / "__init__.py").write_text(python)
    build = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
    wheel = '\n[tool.hatch.build.targets.wheel]\npackages = ["agentmeta_sums"]\n'
    (src / "pyproject.toml").write_text(build + toml + wheel)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return target


def agentmeta(plugin_path: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(plugin_path),
        AGENTMETA_CACHE_DIR=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
    )
    return subprocess.run(
        [sys.executable, "-m", "agentmeta", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def test_plugins_lists_the_packages_additions(plugin_path: Path, tmp_path: Path) -> None:
    p = agentmeta(plugin_path, tmp_path, "plugins", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    mine = {
        (e["category"], e["name"])
        for e in data["entries"]
        if e["origin"] == "agentmeta-sums (entry point sums)"
    }
    assert mine == {
        ("suite", "sums"),
        ("scorer", "last-int"),
        ("kind", "template"),
        ("strategy", "template-grid"),
        ("operator", "terse"),
    }
    assert not data["plugin_errors"]
    table = agentmeta(plugin_path, tmp_path, "plugins")
    assert table.returncode == 0 and "template-grid" in table.stdout and "agentmeta-sums" in table.stdout
    # without the package on the path, none of it exists
    bare = subprocess.run(
        [sys.executable, "-m", "agentmeta", "plugins", "--json"], capture_output=True, text=True
    )
    assert "template-grid" not in bare.stdout


def test_eval_and_search_use_the_plugin_from_the_command_line(plugin_path: Path, tmp_path: Path) -> None:
    agent = tmp_path / "plain.json"
    agent.write_text(
        json.dumps({"kind": "template", "name": "plain", "source": json.dumps({"template": "{input}"})})
    )
    out = tmp_path / "results.json"
    p = agentmeta(plugin_path, tmp_path, "eval", str(agent), "--suite", "sums", "--limit", "8", "--model", "mock",
                  "--json", "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    (summary,) = json.loads(p.stdout)
    assert summary["suite"] == "sums" and summary["n"] == 8 and summary["n_errors"] == 0
    # the mock model echoes the prompt (the template filled in): the plugin's scorer judged each
    records = json.loads(out.read_text())["records"]
    for r in records:
        assert r["answer"].startswith("mock: What is ")
        assert r["score"] == float(re.findall(r"-?\d+", r["answer"])[-1] == r["target"])
    db = tmp_path / "a.db"
    p = agentmeta(plugin_path, tmp_path, "search", "--suite", "sums", "--strategy", "template-grid", "--kind", "template",
                  "--iterations", "3", "--model", "mock", "--archive", str(db), "--subset", "2", "--full", "4")  # fmt: skip
    assert p.returncode == 0, p.stderr
    from agentmeta.archive import Archive

    cands = Archive(str(db)).candidates()
    assert sorted(c.name for c in cands) == ["plain", "template-0", "template-1", "template-2"]  # its seed too
    assert {c.kind for c in cands} == {"template"} and all(c.status == "ok" for c in cands)


def test_a_plugin_kind_with_a_slot_is_searched_by_bayes_and_its_operator_is_drawn(
    plugin_path: Path, tmp_path: Path
) -> None:
    from agentmeta.archive import Archive
    from agentmeta.search.operators import INSTRUCTIONS

    db = tmp_path / "b.db"
    p = agentmeta(plugin_path, tmp_path, "search", "--suite", "sums", "--strategy", "bayes", "--kind", "template",
                  "--iterations", "3", "--model", "mock", "--archive", str(db), "--subset", "2", "--full", "4")  # fmt: skip
    assert p.returncode == 0, p.stderr
    cands = Archive(str(db)).candidates()
    seed = next(c for c in cands if c.name == "plain")
    trials = [c for c in cands if c.parent_ids == [seed.id]]
    assert len(trials) == 3 and {c.kind for c in trials} == {"template"}
    # each trial is the seed's slot set by the plugin's set_slot: "{input}\n" + a library instruction
    for c in trials:
        template = json.loads(c.source)["template"]
        assert template.split("\n", 1)[1] in INSTRUCTIONS and c.metadata["params"]["instruction"] > 0
    # a kind without slots is refused before any work, naming the kinds that have them
    p = agentmeta(plugin_path, tmp_path, "search", "--suite", "sums", "--strategy", "bayes", "--kind", "code",
                  "--iterations", "1", "--model", "mock", "--archive", str(tmp_path / "c.db"))  # fmt: skip
    assert p.returncode != 0 and "kinds with them: graph, prompt, template" in p.stderr
    # the plugin's operator is one the operator strategies draw, and it applies to a shipped graph
    code = (
        "import random; from agentmeta.agents import find_seed, parse_spec;"
        "from agentmeta.search.evolve import mutations; from agentmeta.search.operators import apply, OperatorContext;"
        "from types import SimpleNamespace as N;"
        "assert 'terse' in mutations(N(evaluate=None, trace=None, train_samples=[], models=[]));"
        "g = parse_spec(find_seed('graph/cot').source);"
        "print(apply('terse', g, random.Random(0), OperatorContext()).nodes[-1].prompt)"
    )
    env = dict(os.environ, PYTHONPATH=str(plugin_path), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("Be brief.")
