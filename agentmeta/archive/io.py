"""Import and export: ADAS archive JSON, agentmeta's own JSON, and readable candidate folders."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from agentmeta._paths import atomic_write
from agentmeta.archive.records import Campaign, Candidate, ImportResult, utcnow
from agentmeta.errors import ArchiveError, DataError

if TYPE_CHECKING:
    from agentmeta.archive.store import Archive

log = logging.getLogger(__name__)

EXPORT_FORMAT = "agentmeta-archive"
EXPORT_VERSION = 1
SOURCE_FILES = {
    "code": "agent.py",
    "graph": "graph.yaml",
    "prompt": "prompt.txt",
    "conductor": "conductor.txt",
    "model": "model.txt",
}


def source_file(kind: str) -> str:
    """The file an exported candidate's source goes to: `SOURCE_FILES`, else `<kind>.txt` (a plugin's
    kind, the name made safe for a file name)."""
    return SOURCE_FILES.get(kind) or (re.sub(r"[^A-Za-z0-9_-]+", "_", kind).strip("_") or "source") + ".txt"


_ADAS_KNOWN = {"thought", "name", "code", "fitness", "generation"}

_NUM = r"(-?\d+(?:\.\d+)?)"
_CI_RE = re.compile(rf"\(\s*{_NUM}\s*%?\s*,\s*{_NUM}\s*%?\s*\)")
_MEDIAN_RE = re.compile(rf"Median:\s*{_NUM}\s*(%?)", re.IGNORECASE)
_PLAIN_RE = re.compile(rf"^\s*{_NUM}\s*(%?)\s*$")


class FitnessCI(NamedTuple):
    """A fitness and its 95% CI, as fractions (18.9% -> 0.189)."""

    value: float
    ci_low: float | None
    ci_high: float | None


def parse_adas_fitness(fitness: str | float | int) -> FitnessCI:
    """Parse ADAS's fitness string into numbers (fractions, not percents).

    `"95% Bootstrap Confidence Interval: (12.3%, 25.6%), Median: 18.9%"` -> (0.189, 0.123, 0.256).
    Plain numbers and `"42.0%"` are accepted too; a bare number above 1 is read as a percent.
    """
    if isinstance(fitness, bool):
        raise DataError(f"expected an ADAS fitness string or a number, got {fitness!r}")
    if isinstance(fitness, (int, float)):
        v = float(fitness)
        return FitnessCI(v / 100 if abs(v) > 1 else v, None, None)
    if not isinstance(fitness, str):
        raise DataError(f"expected an ADAS fitness string or a number, got {type(fitness).__name__}")
    plain = _PLAIN_RE.match(fitness)
    if plain:
        v = float(plain.group(1))
        return FitnessCI(v / 100 if plain.group(2) or abs(v) > 1 else v, None, None)
    median = _MEDIAN_RE.search(fitness)
    if median is None:
        raise DataError(
            f"cannot parse ADAS fitness {fitness[:120]!r}; expected "
            "'95% Bootstrap Confidence Interval: (L%, H%), Median: M%' or a number"
        )
    ci = _CI_RE.search(fitness)
    low, high = (float(ci.group(1)) / 100, float(ci.group(2)) / 100) if ci else (None, None)
    return FitnessCI(float(median.group(1)) / 100, low, high)


# -- export -----------------------------------------------------------------------------------


def _topological(cands: list[Candidate]) -> list[Candidate]:
    """Parents before children (stable on the given order)."""
    by_id = {c.id: c for c in cands}
    done: set[str] = set()
    out: list[Candidate] = []

    def visit(c: Candidate, stack: set[str]) -> None:
        if c.id in done or c.id in stack:
            return
        stack.add(c.id)
        for p in c.parent_ids:
            if p in by_id:
                visit(by_id[p], stack)
        done.add(c.id)
        out.append(c)

    for c in cands:
        visit(c, set())
    return out


def export_json(archive: Archive, path: str | Path | None, *, campaign: str | None) -> str:
    cands = _topological(archive.candidates(campaign=campaign, with_evaluations=True))
    camps = archive.campaigns()
    if campaign is not None:
        wanted = {c.campaign for c in cands}
        camps = [c for c in camps if c.id in wanted or c.name == campaign or c.id == campaign]
    doc = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": utcnow().isoformat(),
        "campaigns": [c.model_dump(mode="json") for c in camps],
        "candidates": [c.model_dump(mode="json") for c in cands],
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if path is not None:
        atomic_write(Path(path), text)
        log.info("exported %d candidates to %s", len(cands), path)
    return text


# -- import -----------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ArchiveError(f"no file {path} to import; expected an ADAS or agentmeta archive JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchiveError(
            f"{path} is not JSON ({e}); expected an ADAS or agentmeta archive JSON file"
        ) from e


def _adas_candidates(entries: list[Any], path: Path, campaign: str | None) -> list[Candidate]:
    out: list[Candidate] = []
    for i, entry in enumerate(entries):
        where = f"{path} entry {i}"
        if not isinstance(entry, dict):
            raise ArchiveError(
                f"{where} is {type(entry).__name__}; expected an object with thought, name, code"
            )
        missing = [k for k in ("name", "code") if not isinstance(entry.get(k), str)]
        if missing:
            raise ArchiveError(
                f"{where} lacks string field(s) {missing}; expected {{thought, name, code, fitness?}}"
            )
        extra = {k: v for k, v in entry.items() if k not in _ADAS_KNOWN}
        meta: dict[str, Any] = {"source_format": "adas", "import_index": i}
        fit = None
        try:
            if entry.get("fitness") is not None:
                fit = parse_adas_fitness(entry["fitness"])
                meta["adas_fitness"] = entry["fitness"]
                meta["fitness_statistic"] = "bootstrap median"
            if entry.get("test_fitness") is not None:
                tf = parse_adas_fitness(extra.pop("test_fitness"))
                meta["test_fitness"] = {"value": tf.value, "ci_low": tf.ci_low, "ci_high": tf.ci_high}
                meta["adas_test_fitness"] = entry["test_fitness"]
        except DataError as e:
            raise ArchiveError(f"{where}: {e}") from e
        gen = entry.get("generation", 0)
        generation = gen if isinstance(gen, int) and not isinstance(gen, bool) and gen >= 0 else 0
        if gen not in (0, "initial", None) and generation == 0:
            meta["adas_generation"] = gen
        if extra:
            meta["adas_extra"] = extra
        digest = hashlib.sha256(f"{entry['name']}\0{entry['code']}".encode()).hexdigest()
        out.append(
            Candidate(
                key=f"adas:{digest}",
                kind="code",
                name=entry["name"],
                thought=str(entry.get("thought") or ""),
                source=entry["code"],
                generation=generation,
                campaign=campaign,
                fitness=fit.value if fit else None,
                ci_low=fit.ci_low if fit else None,
                ci_high=fit.ci_high if fit else None,
                status="ok" if fit else "pending",
                metadata=meta,
            )
        )
    return out


def _own_records(doc: dict[str, Any], path: Path) -> tuple[list[Campaign], list[Candidate]]:
    version = doc.get("version")
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise ArchiveError(
            f"{path} is agentmeta export version {version!r}; this agentmeta reads {EXPORT_VERSION}"
        )
    try:
        camps = [Campaign.model_validate(c) for c in doc.get("campaigns") or []]
        cands = [Candidate.model_validate(c) for c in doc.get("candidates") or []]
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ArchiveError(
            f"{path} has an invalid record ({loc}: {first['msg']}); expected an agentmeta export"
        ) from e
    for c in cands:
        if not c.id:
            raise ArchiveError(
                f"{path} has a candidate without id ({c.name!r}); expected an agentmeta export"
            )
    return camps, cands


def import_json(archive: Archive, path: str | Path, *, campaign: str | None) -> ImportResult:
    path = Path(path)
    doc = _load(path)
    if isinstance(doc, list):
        cands = _adas_candidates(doc, path, campaign)
        added = existing = 0
        ids: list[str] = []
        for c in cands:
            cid, new = archive._add(c)
            ids.append(cid)
            added += new
            existing += not new
        log.info("imported ADAS archive %s: %d added, %d already present", path, added, existing)
        return ImportResult(format="adas", added=added, existing=existing, ids=ids)
    if isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT:
        camps, records = _own_records(doc, path)
        for camp in camps:
            archive._add_campaign(camp)
        id_map: dict[str, str] = {}
        added = existing = 0
        for c in _topological(records):
            parents = [id_map.get(p, p) for p in c.parent_ids]
            cid, new = archive._add(c.model_copy(update={"parent_ids": parents}))
            id_map[c.id] = cid
            added += new
            existing += not new
        log.info("imported agentmeta archive %s: %d added, %d already present", path, added, existing)
        return ImportResult(
            format="agentmeta", added=added, existing=existing, ids=[id_map[c.id] for c in records]
        )
    got = type(doc).__name__ if not isinstance(doc, dict) else f"an object with keys {sorted(doc)[:6]}"
    raise ArchiveError(
        f"{path} is {got}; expected an ADAS archive (a list of {{thought, name, code, fitness}}) "
        f"or an agentmeta export (format {EXPORT_FORMAT!r})"
    )


# -- readable folder --------------------------------------------------------------------------


def export_candidate(archive: Archive, candidate_id: str, directory: str | Path) -> Path:
    cand = archive.get(candidate_id)
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ArchiveError(f"{out} is a file; expected a folder to export candidate {cand.id} into")
    meta_file = out / "candidate.json"
    if meta_file.exists():
        try:
            previous = json.loads(meta_file.read_text(encoding="utf-8")).get("id")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != cand.id:
            raise ArchiveError(
                f"{out} already holds another export ({previous!r}); pick an empty folder for {cand.id}"
            )
    out.mkdir(parents=True, exist_ok=True)
    source_name = source_file(cand.kind)
    meta = cand.model_dump(mode="json", exclude={"source", "evaluations"})
    meta["source_file"] = source_name
    meta["evaluations"] = [
        {k: v for k, v in e.model_dump(mode="json").items() if k != "scores"} for e in cand.evaluations
    ]
    atomic_write(
        out / source_name,
        cand.source if cand.source.endswith("\n") or not cand.source else cand.source + "\n",
    )
    atomic_write(
        out / "evaluations.json",
        json.dumps([e.model_dump(mode="json") for e in cand.evaluations], indent=1, ensure_ascii=False),
    )
    atomic_write(meta_file, json.dumps(meta, indent=1, ensure_ascii=False))
    return out
