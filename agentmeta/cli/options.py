"""Options several commands share."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

UnsafeSandbox = Annotated[
    bool,
    typer.Option(
        "--unsafe-sandbox",
        help="Run generated code without isolation where neither bubblewrap nor unshare works.",
    ),
]


def apply_unsafe_sandbox(flag: bool) -> None:
    """`--unsafe-sandbox`: opt in for this process (sandboxes read AGENTMETA_UNSAFE_SANDBOX)."""
    if flag:
        os.environ["AGENTMETA_UNSAFE_SANDBOX"] = "1"


RayFlag = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Evaluate samples on Ray actors (each with its own model and sandboxes): the cluster at "
        "--ray-address or AGENTMETA_RAY_ADDRESS, else a local Ray instance on 127.0.0.1 (extra `ray`).",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster to evaluate on (host:port, ray://host:10001, auto); implies --ray.",
    ),
]
RayActors = Annotated[
    int | None, typer.Option("--ray-actors", min=1, help="Ray actors (default: one per node of the cluster).")
]
RayGpus = Annotated[
    float, typer.Option("--ray-gpus", min=0.0, help="GPUs each Ray actor holds (1 for a vllm/ model).")
]


def ray_executor(flag: bool, address: str | None, actors: int | None, gpus: float):  # noqa: ANN201
    """The `RayExecutor` the `--ray` options ask for, or None (samples run in this process)."""
    if not flag and not address:
        return None
    from agentmeta.eval.ray_executor import RayExecutor

    return RayExecutor(address, actors=actors, num_gpus=gpus)


def load_agent(agent: str, archive: str | None) -> tuple[object, str, object]:
    """AGENT as the commands take it: with `archive`, a candidate id (or unique prefix) there;
    otherwise a registered agent, a seed, an agent file, or `conductor` (the default conductor).
    Returns (agent, display name, candidate record or None)."""
    from agentmeta.agents.builtin import get_agent

    if archive is not None:
        from agentmeta.agents.base import AgentSpec
        from agentmeta.archive import Archive

        cand = Archive(archive, create=False).get(agent, with_evaluations=False)
        built = AgentSpec(kind=cand.kind, name=cand.name, thought=cand.thought, source=cand.source).build()
        built.name = f"{cand.name} ({cand.id})"  # type: ignore[attr-defined]
        return built, built.name, cand  # type: ignore[attr-defined]
    if agent == "conductor":
        from agentmeta.conductor.agent import ConductorAgent, ConductorSpec

        return ConductorAgent(ConductorSpec()), "conductor", None
    built, name = get_agent(agent)
    return built, name, None


def config_option(what: str) -> Any:
    """The `--config FILE` option of a command whose options a YAML or JSON file can give."""
    return typer.Option(
        "--config",
        help=f"A YAML or JSON file of the {what}'s settings (the options, by their Python names); options "
        "given on the command line override it.",
    )


def read_config_file(path: Path, known: Iterable[str]) -> dict[str, Any]:
    """The settings in a `--config` file: a mapping whose keys are all in `known` (`ConfigError`
    naming the unknown ones and the known ones otherwise)."""
    import yaml

    from agentmeta.errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not YAML or JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings, got {type(data).__name__}")
    known = list(known)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"--config {path}: unknown settings {', '.join(unknown)}; known: {', '.join(known)}")
    return data


def given_on_command_line(ctx: typer.Context, names: Iterable[str]) -> set[str]:
    """The parameters the user gave (command line or environment), not left at their defaults."""
    # by name: typer ships its own copy of click, whose ParameterSource is another class
    return {k for k in names if getattr(ctx.get_parameter_source(k), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}


def merge_config(ctx: typer.Context, values: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """`values` (a command's parameters by name) with a `--config` file's settings under those the
    command line gave: command line, then file, then defaults."""
    if path is None:
        return values
    data = read_config_file(path, values)
    given = given_on_command_line(ctx, values)
    return {**values, **data, **{k: values[k] for k in given}}
