"""Earlier looks at a campaign's test split: the last one recorded, whether a confirmation with
given settings would be a new look, and what extending a confirmed campaign says and refuses.
The record itself is the archive's (`Archive.test_looks`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentmeta.archive.test_looks import TestLook
from agentmeta.errors import ConfigError

log = logging.getLogger(__name__)


def last_look(archive: Any, record: Any) -> TestLook | None:
    """This campaign's last recorded look; for a campaign confirmed before looks were recorded,
    the confirmation its state kept (model, seed and sample count)."""
    looks = archive.test_looks(campaign=record.id)
    if looks:
        return looks[-1]
    old = (record.state or {}).get("confirmation")
    if not old:
        return None
    settings = {"model": old.get("model"), "seed": old.get("seed"), "n": old.get("n")}
    return TestLook(suite=old.get("suite", ""), campaign=record.id, settings=settings)


def look_conflict(archive: Any, record: Any, settings: dict[str, Any]) -> str | None:
    """Why a confirmation of this campaign with these settings (model, seed, limit, margin) would be
    a new look at its test split, or None (never confirmed, or the same settings as its last look)."""
    last = last_look(archive, record)
    if last is None:
        return None
    if "n" in last.settings and not last.sample_ids:  # recorded before looks were: model and seed
        same = (last.settings["model"], last.settings["seed"]) == (settings["model"], settings["seed"])
    else:
        same = last.settings == settings
    if same:
        return None
    return f"campaign {record.name!r} was already confirmed on its test split with other settings ({describe_look(last)})"


def same_look(last: TestLook, settings: dict[str, Any], ids: list[str]) -> bool:
    if "n" in last.settings and not last.sample_ids:  # recorded before looks were
        return (last.settings["model"], last.settings["seed"], last.settings["n"]) == (
            settings["model"], settings["seed"], len(ids),
        )  # fmt: skip
    return last.settings == settings and last.sample_ids == ids


def describe_look(look: TestLook | tuple[dict[str, Any], list[str]]) -> str:
    settings, ids = (look.settings, look.sample_ids) if isinstance(look, TestLook) else look
    n = len(ids) or settings.get("n")
    shown = ", ".join(f"{k} {v}" for k, v in settings.items() if k != "n")
    return f"{n} samples, {shown}"


def check_earlier_looks(
    archive: Any,
    campaign_id: str,
    settings: dict[str, Any] | None,
    progress: Callable[[dict[str, Any]], None],
) -> None:
    """Before a campaign runs again: if it was confirmed, warn that its test samples were used and,
    when it will confirm again (`settings` given), refuse now, not after the search, settings other
    than its last look's."""
    record = archive.get_campaign(campaign_id)
    looks = [x for x in archive.test_looks(campaign=record.id) if not x.repeat]
    if not looks and not (record.state or {}).get("confirmation"):
        return
    n = len(looks[-1].sample_ids) if looks else (record.state["confirmation"].get("n") or 0)
    message = (
        f"campaign {record.name!r} was confirmed before ({max(len(looks), 1)} look(s) at its test split, "
        f"{n} samples): a best found now and confirmed on those samples is not a fresh held-out test"
    )
    log.warning("%s", message)
    progress({"event": "warning", "message": message})
    conflict = look_conflict(archive, record, settings) if settings is not None else None
    if conflict:
        raise ConfigError(
            f"{conflict}; run with the same --confirm-limit and --confirm-margin, or with "
            "--no-confirm and then `agentmeta confirm --new-look`"
        )
