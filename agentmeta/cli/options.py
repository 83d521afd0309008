"""Options several commands share."""

from __future__ import annotations

import os
from typing import Annotated

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
