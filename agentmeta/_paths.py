"""Locate the data folders (archive/, prompts/, evals/) in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`archive`, `prompts` or `evals`: inside the wheel (`agentmeta/_data/<name>`) or the checkout root."""
    packaged = _PKG / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PKG.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"agentmeta data folder {name!r} not found in {packaged} or {checkout}")
