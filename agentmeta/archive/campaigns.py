"""Campaign records: a campaign's config and progress, so that re-running it resumes."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, insert, select, update

from agentmeta.archive import schema as t
from agentmeta.archive.records import Campaign, as_utc, new_id, utcnow
from agentmeta.errors import ArchiveError

log = logging.getLogger(__name__)


def _json_normal(value: dict[str, Any]) -> dict[str, Any]:
    """The value as it reads back from a JSON column (tuples become lists, keys strings)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ArchiveError(f"campaign config must be JSON-serializable: {e}") from e


class CampaignsMixin:
    """Campaign methods of `Archive` (which provides `_read`, `_write` and `location`)."""

    location: str

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[Connection]: ...

        def _write(self) -> AbstractContextManager[Connection]: ...

    @staticmethod
    def _campaign(row: RowMapping) -> Campaign:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
        data["updated_at"] = as_utc(data["updated_at"])
        return Campaign.model_validate(data)

    # -- campaigns --------------------------------------------------------------------------

    def start_campaign(
        self, name: str, config: dict[str, Any] | None = None, *, id: str | None = None
    ) -> Campaign:
        """Create the campaign `name`, or return it if it exists with the same config (resume).

        A different config under an existing name raises `ArchiveError`: a resumed campaign must
        run what it started with.
        """
        config = _json_normal(dict(config or {}))
        try:
            return self._start_campaign(name, config, id)
        except t.WriteConflict:  # another process created it meanwhile: resume that one
            return self._start_campaign(name, config, id)

    def _start_campaign(self, name: str, config: dict[str, Any], id: str | None) -> Campaign:
        with self._write() as conn:
            row = conn.execute(select(t.campaigns).where(t.campaigns.c.name == name)).mappings().first()
            if row is not None:
                found = self._campaign(row)
                if found.config != config:
                    changed = sorted(
                        k for k in set(found.config) | set(config) if found.config.get(k) != config.get(k)
                    )
                    raise ArchiveError(
                        f"campaign {name!r} exists in {self.location} with another config (differs in "
                        f"{changed}); resume it with the same config or pick a new campaign name"
                    )
                return found
            now = utcnow()
            camp = Campaign(id=id or new_id(), name=name, config=config, created_at=now, updated_at=now)
            conn.execute(insert(t.campaigns), [self._campaign_row(camp)])
        log.info("started campaign %s (%s)", camp.name, camp.id)
        return camp

    @staticmethod
    def _campaign_row(c: Campaign) -> dict[str, Any]:
        data = c.model_dump(mode="json", exclude={"created_at", "updated_at"})
        data["created_at"] = c.created_at
        data["updated_at"] = c.updated_at
        return data

    def get_campaign(self, id_or_name: str) -> Campaign:
        """The campaign with this id or name; raises `ArchiveError` if absent."""
        c = t.campaigns.c
        with self._read() as conn:
            row = (
                conn.execute(select(t.campaigns).where((c.id == id_or_name) | (c.name == id_or_name)))
                .mappings()
                .first()
            )
        if row is None:
            raise ArchiveError(f"no campaign {id_or_name!r} in {self.location}")
        return self._campaign(row)

    def update_campaign(
        self, id_or_name: str, *, status: str | None = None, state: dict[str, Any] | None = None
    ) -> Campaign:
        """Set a campaign's status and/or merge keys into its state; return the updated record."""
        if status is not None and status not in ("running", "done", "failed", "stopped"):
            raise ArchiveError(
                f"unknown campaign status {status!r}; expected running, done, failed or stopped"
            )
        camp = self.get_campaign(id_or_name)
        with self._write() as conn:
            cur = conn.execute(
                select(t.campaigns.c.state).where(t.campaigns.c.id == camp.id).with_for_update(key_share=True)
            ).scalar_one()
            values: dict[str, Any] = {"updated_at": utcnow()}
            if status is not None:
                values["status"] = status
            if state is not None:
                values["state"] = {**(cur or {}), **state}
            conn.execute(update(t.campaigns).where(t.campaigns.c.id == camp.id).values(**values))
        return self.get_campaign(camp.id)

    def campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(t.campaigns).order_by(t.campaigns.c.created_at)).mappings().all()
        return [self._campaign(r) for r in rows]

    def _add_campaign(self, camp: Campaign) -> bool:
        """Insert a campaign record as is (import); False if its id is already present."""
        try:
            return self._insert_campaign(camp)
        except t.WriteConflict:  # another process inserted it meanwhile
            return self._insert_campaign(camp)

    def _insert_campaign(self, camp: Campaign) -> bool:
        with self._write() as conn:
            c = t.campaigns.c
            row = conn.execute(select(c.id, c.name).where((c.id == camp.id) | (c.name == camp.name))).first()
            if row is not None:
                if row[0] != camp.id:
                    raise ArchiveError(
                        f"campaign name {camp.name!r} is used by campaign {row[0]} in {self.location}, "
                        f"not {camp.id}; import into another archive"
                    )
                return False
            conn.execute(insert(t.campaigns), [self._campaign_row(camp)])
        return True

    @staticmethod
    def _campaign_id(conn: Connection, id_or_name: str) -> str:
        c = t.campaigns.c
        row = conn.execute(select(c.id).where((c.id == id_or_name) | (c.name == id_or_name))).first()
        return str(row[0]) if row is not None else id_or_name
