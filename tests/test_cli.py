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
