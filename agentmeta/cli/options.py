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
