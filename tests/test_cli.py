"""The `agentmeta` command: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmeta", *args], capture_output=True, text=True, timeout=timeout
    )


def test_models_lists_providers_and_default():
    p = run("models")
    assert p.returncode == 0
    for spec in ("smollm2", "hf/", "openai/", "vllm/", "mock"):
        assert spec in p.stdout
    assert "default: smollm2" in p.stdout


def test_generate_on_mock_json():
    p = run("generate", "hello there", "--model", "mock", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["texts"] == ["mock: hello there"] and data["model"] == "mock"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["generate", "x", "--model", "nope"], "valid forms"),
        (["generate", "   "], "empty"),
        (["generate", "x", "--model", "hf/org/not-cached"], "must be local"),
    ],
)
def test_errors_are_one_line_exit_2(args, needle):
    p = run(*args)
    assert p.returncode == 2
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_bad_option_exit_2():
    p = run("generate", "x", "-n", "0")
    assert p.returncode == 2 and "Traceback" not in p.stderr


@pytest.mark.embedded
def test_generate_embedded(embedded):
    p = run("generate", "What is 2+3?", "--max-tokens", "16")
    assert p.returncode == 0, p.stderr
    assert "5" in p.stdout


def test_the_cli_reference_page_has_every_command_and_its_options():
    import typer

    from agentmeta.cli import app
    from agentmeta.cli.reference import markdown, on_page_markdown

    text = markdown()
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        assert f"## `agentmeta {name}`" in text
        for sub in getattr(cmd, "commands", {}):
            assert f"## `agentmeta {name} {sub}`" in text
    assert "`--config <path>`" in text and "`--parallel <int range>`" in text
    assert on_page_markdown("a\n<!-- cli-reference -->\n").startswith("a\n## `agentmeta ")


def _campaign_archive(path) -> str:
    """An archive holding one (mock-model) campaign, for `confirm`."""
    from agentmeta import get_model
    from agentmeta.archive import Archive
    from agentmeta.search import Campaign, SearchConfig

    config = SearchConfig(suite="rg/gcd", kind="graph", strategy="random", seeds=["cot"], iterations=0, full=2,
                          subset=1, confirm=False, name="c")  # fmt: skip
    Campaign(config, Archive(path), model=get_model("mock"), meta_model=get_model("mock")).run()
    return str(path)


def test_every_command_taking_a_model_takes_an_adapter_spec(tmp_path):
    """`smollm2:<dir>` goes through the same spec parser in every command: a missing adapter is one
    line and exit 2 before anything runs (the embedded tests run real adapters)."""
    db = _campaign_archive(tmp_path / "a.db")
    spec = "smollm2:" + str(tmp_path / "no-such-lora")
    commands = [
        ["generate", "hi", "--model", spec],
        ["conduct", "hi", "--model", spec],
        ["eval", "direct", "--suite", "rg/gcd", "--model", spec],
        ["search", "--suite", "rg/gcd", "--kind", "graph", "--strategy", "random", "--model", spec,
         "--archive", str(tmp_path / "b.db")],
        ["confirm", "c", "--model", spec, "--archive", db],
        ["serve", "cot", "--model", spec],
    ]  # fmt: skip
    for args in commands:
        p = run(*args, timeout=120)
        assert p.returncode == 2, (args, p.stderr)
        assert "adapter directory" in p.stderr and "does not exist" in p.stderr and "Traceback" not in p.stderr, args


@pytest.mark.embedded
def test_generate_runs_the_embedded_model_with_an_adapter(embedded, dense_model_dir, tmp_path):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from agentmeta.models.hf import peft_quiet

    adapter = tmp_path / "lora"
    with peft_quiet():  # an untrained adapter: the answers are the base model's
        model = transformers.AutoModelForCausalLM.from_pretrained(dense_model_dir, torch_dtype=torch.float32)
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    plain = run("generate", "What is 2+3?", "--max-tokens", "16", "--json")
    tuned = run("generate", "What is 2+3?", "--max-tokens", "16", "--json", "--model", f"smollm2:{adapter}")
    assert plain.returncode == 0 and tuned.returncode == 0, tuned.stderr
    assert json.loads(tuned.stdout)["texts"] == json.loads(plain.stdout)["texts"]
    assert json.loads(tuned.stdout)["model"] == f"smollm2+{adapter}"
