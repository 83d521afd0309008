"""Suites from the user's own files (JSONL, CSV, JSON): ids from the row or its content, splits from a
`split` column or a hash of the id, so that editing the file never moves another row to another
split. `load_suite` reads a spec that names a file through `_user_suite`."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, cast

from agentmeta.errors import ConfigError, DataError
from agentmeta.eval.audit import apply_builtin_checks
from agentmeta.eval.suites import USER_FILE_SUFFIXES, _gold_scorer, _hash_key, select_samples
from agentmeta.eval.types import Sample, ScorerSpec, SplitName, SplitSizes, Suite


def _looks_like_file(base: str) -> bool:
    return base.lower().endswith(USER_FILE_SUFFIXES) or Path(base).is_file()


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(f"suite file {path} does not exist")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:
                    raise DataError(
                        f"{path} line {reader.line_num}: more values than the {len(reader.fieldnames or [])} "
                        "header columns"
                    )
                rows.append((reader.line_num, dict(row)))
        return rows
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise DataError(f"{path}: not valid JSON: {e}") from e
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise DataError(f"{path} item {i}: expected an object with fields, got {type(item).__name__}")
            rows.append((i, item))
        return rows
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path} line {lineno}: not valid JSON ({e.args[0] if e.args else e})") from e
        if not isinstance(item, dict):
            raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(item).__name__}")
        rows.append((lineno, item))
    return rows


_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "dev": "validation",
                  "test": "test"}  # fmt: skip


def _fraction(opts: dict[str, Any], key: str, default: float) -> float:
    value = opts.pop(key, default)
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = -1.0
    if not 0.0 <= f <= 1.0:
        raise ConfigError(
            f"suite file option {key}={value!r}: give the share of rows as a fraction from 0 to 1 "
            f"(default {default}); rows are assigned to splits by a hash of their content"
        )
    return f


def content_id(input_text: str, target: str) -> str:
    """A row's id from its content: the same row keeps its id wherever it moves in the file."""
    return hashlib.sha256(f"{input_text}\x1f{target}".encode()).hexdigest()[:16]


def _user_suite(
    base: str, opts: dict[str, Any], split: str, limit: int | None, seed: int, checks: bool = True
) -> Suite:
    """A JSONL/CSV/JSON file as a suite.

    Ids come from the row's `id` field, else from a hash of its input and target; splits come from
    the row's `split` field where it has one (train, validation/val/dev, test), else from a hash
    of the id (shares `train`, `validation`, the rest test). So inserting, deleting or reordering
    rows never moves another row to another split.
    """
    path = Path(base).expanduser()
    input_field = str(opts.pop("input", "input"))
    target_field = str(opts.pop("target", "target"))
    id_field = str(opts.pop("id", "id"))
    split_field = str(opts.pop("split_field", "split"))
    scorer_name = str(opts.pop("scorer", "exact"))
    train_share = _fraction(opts, "train", 0.2)
    val_share = _fraction(opts, "validation", 0.4)
    if train_share + val_share > 1.0:
        raise ConfigError(f"suite file: train ({train_share}) + validation ({val_share}) shares exceed 1")
    scorer_args = opts.pop("scorer_args", {})
    if opts:
        raise ConfigError(
            f"unknown options for a suite file: {sorted(opts)}; valid: input, target, id, split_field, "
            "scorer, scorer_args, train, validation"
        )
    from agentmeta.eval.scorers import build_scorer

    spec = ScorerSpec(name=scorer_name, args=scorer_args)
    build_scorer(spec)  # fail now on a bad scorer name, not on the first sample
    rows: list[tuple[Sample, str]] = []
    lines: dict[str, int] = {}
    repeated = 0
    for lineno, row in _read_records(path):
        for field in (input_field, target_field):
            if row.get(field) in (None, ""):
                raise DataError(
                    f"{path} line {lineno}: missing field {field!r} (fields there: "
                    f"{', '.join(map(str, row))}); name the field with ?{'input' if field == input_field else 'target'}=<field>"
                )
        text, target = str(row[input_field]), str(row[target_field])
        given = row.get(id_field)
        sid = str(given) if given not in (None, "") else content_id(text, target)
        if sid in lines:
            if given not in (None, ""):
                raise DataError(
                    f"{path} line {lineno}: id {sid!r} is also on line {lines[sid]}; ids must be unique"
                )
            repeated += 1  # the same row again
            continue
        lines[sid] = lineno
        meta = {k: v for k, v in row.items() if k not in (input_field, target_field, id_field)}
        row_split = _SPLIT_ALIASES.get(str(meta.get(split_field, "")).strip().lower(), "")
        if not row_split:
            u = int(_hash_key("user-file", sid)[:8], 16) / 16**8
            row_split = "train" if u < train_share else "validation" if u < train_share + val_share else "test"
        rows.append((Sample(id=sid, input=text, target=target, metadata=meta), row_split))
    if not rows:
        raise DataError(f"{path} has no records")
    dropped: Counter[str] = Counter({"duplicate": repeated})
    if checks:
        kept, counts = apply_builtin_checks([x for x, _ in rows], _gold_scorer(spec))
        dropped.update(counts)
        keep = {x.id for x in kept}
        rows = [(x, sp) for x, sp in rows if x.id in keep]
    splits: dict[str, list[Sample]] = {"validation": [], "train": [], "test": []}
    for x, sp in rows:
        splits[sp].append(x)
    parts = ["validation", "train", "test"] if split == "all" else [split]
    chosen = [x for part in parts for x in splits[part]]
    if not chosen:
        counts_text = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        raise DataError(
            f"{path}: the {split} split is empty ({counts_text} rows); add rows, give a split column, "
            "or change the shares (?train=0.2&validation=0.4)"
        )
    return Suite(
        name=str(path),
        split=cast(SplitName, split),
        samples=select_samples(chosen, limit, seed),
        scorer=spec,
        sizes=SplitSizes(**{k: len(v) for k, v in splits.items()}),
        description=f"user file {path.name}",
        seed=seed,
        dropped={k: v for k, v in dropped.items() if v},
    )
