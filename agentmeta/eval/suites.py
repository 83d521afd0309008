"""`load_suite`: suite definitions from `evals/*.yaml`, disjoint deterministic splits, user files.

Spec forms: a defined suite (`gsm8k`), a family member (`rg/countdown`), or a path to a JSONL/CSV
file. Options follow a `?` as `key=value` pairs joined by `&` (`rg/countdown?min_numbers=3`,
`data.jsonl?input=question&target=answer&scorer=numeric`), or come as keyword arguments.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, Field

from agentmeta._paths import data_dir
from agentmeta.errors import ConfigError, DataError
from agentmeta.eval import loaders
from agentmeta.eval.types import SPLITS, Sample, ScorerSpec, SplitName, SplitSizes, Suite

log = logging.getLogger(__name__)

USER_FILE_SUFFIXES = (".jsonl", ".json", ".csv")


class SuiteDef(BaseModel):
    """One `evals/<name>.yaml` file."""

    name: str
    """Spec name (a family is used as `name/<task>`)."""
    description: str = ""
    """One line."""
    loader: str
    """Loader name in `loaders.FIXED` (or `loaders.STREAMS` if procedural)."""
    procedural: bool = False
    """Samples are generated (seeded), not read from a fixed file."""
    family: bool = False
    """The spec takes a task after a slash."""
    requires: str | None = None
    """Distribution that holds the data or the generators."""
    scorer: ScorerSpec = Field(default_factory=ScorerSpec)
    """How answers are scored."""
    sizes: dict[str, int | Literal["rest"]] = Field(
        default_factory=lambda: dict[str, int | Literal["rest"]](validation=128, test="rest")
    )
    """Default split sizes; `rest` takes every remaining sample."""
    examples: list[str] = Field(default_factory=list)
    """Example tasks of a family."""


@lru_cache(maxsize=1)
def suite_defs() -> dict[str, SuiteDef]:
    """Every suite defined under `evals/`, by name."""
    import yaml

    out: dict[str, SuiteDef] = {}
    for path in sorted(data_dir("evals").glob("*.yaml")):
        try:
            d = SuiteDef.model_validate(yaml.safe_load(path.read_text()))
        except Exception as e:  # noqa: BLE001 - a broken definition must name its file
            raise ConfigError(f"suite definition {path.name} is invalid: {e}") from e
        out[d.name] = d
    return out


def available_suites() -> list[str]:
    return [f"{n}/<task>" if d.family else n for n, d in suite_defs().items()]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`base?k=v&k2=v2` -> (`base`, {k: v, k2: v2}); values are JSON when they parse, else strings."""
    base, _, query = spec.strip().partition("?")
    options: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ConfigError(f"suite option {part!r} in {spec!r} is not key=value")
        options[key.strip()] = _parse_value(value.strip())
    return base, options


def canonical_spec(base: str, options: dict[str, Any]) -> str:
    """`base` plus its options in a fixed order: the name results are filed under."""
    if not options:
        return base
    query = "&".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(options.items()))
    return f"{base}?{query}"


def _hash_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _resolve_sizes(sizes: dict[str, int | Literal["rest"]], total: int | None) -> SplitSizes:
    val = sizes.get("validation", 128)
    test = sizes.get("test", "rest")
    if total is None:  # procedural: no "rest"
        return SplitSizes(
            validation=int(val if val != "rest" else 128), test=int(test if test != "rest" else 512)
        )
    v = min(int(val), total) if val != "rest" else total
    t = total - v if test == "rest" else min(int(test), total - v)
    return SplitSizes(validation=v, test=t)


def select_samples(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """`limit` samples chosen by `seed`, kept in split order."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 0:
        raise ConfigError(f"limit must be >= 0; got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in chosen]


def _fixed_splits(
    name: str, pool: list[Sample] | dict[str, list[Sample]], sizes: dict[str, int | Literal["rest"]]
) -> tuple[dict[str, list[Sample]], SplitSizes]:
    if isinstance(pool, dict):  # native splits (ARC): cut each to its size, in hash order
        out = {}
        for split in ("validation", "test"):
            part = sorted(pool[split], key=lambda s: _hash_key(name, s.id))
            want = sizes.get(split, "rest")
            out[split] = part if want == "rest" else part[: int(want)]
        return out, SplitSizes(validation=len(out["validation"]), test=len(out["test"]))
    ids = [s.id for s in pool]
    if len(set(ids)) != len(ids):
        raise DataError(f"suite {name}: sample ids are not unique")
    ordered = sorted(pool, key=lambda s: _hash_key(name, s.id))
    resolved = _resolve_sizes(sizes, len(ordered))
    val = ordered[: resolved.validation]
    test = ordered[resolved.validation : resolved.validation + resolved.test]
    return {"validation": val, "test": test}, resolved


def _stream_split(
    name: str, d: SuiteDef, task: str | None, options: dict[str, Any], split: str, count: int, seed: int
) -> list[Sample]:
    """First `count` distinct generated samples whose text hashes into `split`."""
    stream = loaders.STREAMS[d.loader](task, options, seed)
    out: list[Sample] = []
    seen: set[str] = set()
    budget = 50 * count + 200
    for scanned, sample in enumerate(stream):
        if len(out) >= count:
            break
        if scanned >= budget:
            log.warning(
                "%s: only %d distinct %s samples in the first %d generated", name, len(out), split, budget
            )
            break
        key = _hash_key(name, sample.input)
        in_val = int(key[:2], 16) < 128
        if (split == "validation") != in_val or key in seen:
            continue
        seen.add(key)
        out.append(sample)
    return out


def load_suite(
    spec: str, split: str = "validation", limit: int | None = None, seed: int = 0, **options: Any
) -> Suite:
    """Load one split of a suite.

    `split` is `validation`, `test` or `all` (both). Splits are fixed and never overlap; `seed`
    picks which `limit` samples are taken (and, for procedural suites, seeds the generator).
    Options come from the spec (`rg/countdown?min_numbers=3`) and from keyword arguments.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0; got {limit}")
    base, spec_options = parse_spec(spec)
    opts = {**spec_options, **options}
    if _looks_like_file(base):
        return _user_suite(base, opts, split, limit, seed)
    name, _, task = base.partition("/")
    d = suite_defs().get(name)
    if d is None or d.family != bool(task):
        hint = (
            f" ({name} needs a task, e.g. {name}/{d.examples[0]})"
            if d is not None and d.family and d.examples
            else ""
        )
        raise ConfigError(
            f"unknown suite {spec!r}{hint}; available: {', '.join(available_suites())}, "
            "or a path to a .jsonl/.csv file"
        )
    scorer = d.scorer
    if d.family:
        scorer = ScorerSpec(name=scorer.name, args={**scorer.args, "task": task, "options": opts})
    if d.procedural:
        sizes = _resolve_sizes(d.sizes, None)
        parts = ["validation", "test"] if split == "all" else [split]
        samples: list[Sample] = []
        for part in parts:
            count = getattr(sizes, part) if limit is None else min(limit - len(samples), getattr(sizes, part))
            if count > 0:
                samples += _stream_split(base, d, task or None, opts, part, count, seed)
    else:
        if opts and d.loader != "mmlu":
            raise ConfigError(f"suite {name} takes no options; got {opts}")
        pool = loaders.FIXED[d.loader](opts)
        splits, sizes = _fixed_splits(name, pool, d.sizes)
        chosen = splits["validation"] + splits["test"] if split == "all" else splits[split]
        samples = select_samples(chosen, limit, seed)
    return Suite(
        name=canonical_spec(base, opts),
        split=cast(SplitName, split),
        samples=samples,
        scorer=scorer,
        sizes=sizes,
        description=d.description,
        seed=seed,
    )


def suite_sizes(spec: str) -> SplitSizes:
    """Full validation and test sizes of a suite (loads fixed data; procedural suites are not generated)."""
    return load_suite(spec, limit=0).sizes or SplitSizes(validation=0, test=0)


# ----------------------------------------------------------------------------- user files


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


def _user_suite(base: str, opts: dict[str, Any], split: str, limit: int | None, seed: int) -> Suite:
    path = Path(base).expanduser()
    input_field = str(opts.pop("input", "input"))
    target_field = str(opts.pop("target", "target"))
    id_field = str(opts.pop("id", "id"))
    scorer_name = str(opts.pop("scorer", "exact"))
    validation = opts.pop("validation", 0.5)
    scorer_args = opts.pop("scorer_args", {})
    if opts:
        raise ConfigError(
            f"unknown options for a suite file: {sorted(opts)}; valid: input, target, id, scorer, "
            "scorer_args, validation"
        )
    from agentmeta.eval.scorers import build_scorer

    spec = ScorerSpec(name=scorer_name, args=scorer_args)
    build_scorer(spec)  # fail now on a bad scorer name, not on the first sample
    pool: list[Sample] = []
    native: dict[str, list[Sample]] = {"validation": [], "test": []}
    for lineno, row in _read_records(path):
        for field in (input_field, target_field):
            if row.get(field) in (None, ""):
                raise DataError(
                    f"{path} line {lineno}: missing field {field!r} (fields there: "
                    f"{', '.join(map(str, row))}); name the field with ?{'input' if field == input_field else 'target'}=<field>"
                )
        sid = str(row.get(id_field) or f"{path.stem}/{lineno}")
        meta = {k: v for k, v in row.items() if k not in (input_field, target_field, id_field)}
        sample = Sample(id=sid, input=str(row[input_field]), target=str(row[target_field]), metadata=meta)
        pool.append(sample)
        row_split = str(meta.get("split", "")).lower()
        if row_split in native:
            native[row_split].append(sample)
    if not pool:
        raise DataError(f"{path} has no records")
    if (
        native["validation"]
        and native["test"]
        and len(native["validation"]) + len(native["test"]) == len(pool)
    ):
        splits, sizes = _fixed_splits("user-file", native, {"validation": "rest", "test": "rest"})
    else:
        v = float(validation)
        n_val = int(v) if v >= 1 else max(1, round(v * len(pool))) if len(pool) > 1 else 1
        splits, sizes = _fixed_splits("user-file", pool, {"validation": n_val, "test": "rest"})
    chosen = splits["validation"] + splits["test"] if split == "all" else splits[split]
    return Suite(
        name=str(path),
        split=cast(SplitName, split),
        samples=select_samples(chosen, limit, seed),
        scorer=spec,
        sizes=sizes,
        description=f"user file {path.name}",
        seed=seed,
    )


class SuiteInfo(BaseModel):
    """One row of `agentmeta suites`."""

    name: str
    """Spec to use (`rg/<task>` for a family)."""
    description: str
    """One line."""
    scorer: str
    """Scorer name."""
    validation: int | None
    """Validation split size (None if the data package is missing)."""
    test: int | None
    """Test split size (None if the data package is missing)."""
    status: str = "ok"
    """`ok`, or what to install."""


def describe_suites() -> list[SuiteInfo]:
    """Every defined suite with its split sizes; a missing data package is reported, not raised."""
    from agentmeta.errors import MissingExtraError

    rows = []
    for name, d in suite_defs().items():
        spec = f"{name}/<task>" if d.family else name
        desc = d.description + (
            f" (e.g. {', '.join(f'{name}/{e}' for e in d.examples)})" if d.examples else ""
        )
        try:
            sizes = _resolve_sizes(d.sizes, None) if d.procedural else suite_sizes(name)
            if d.family and d.loader == "reasoning_gym":
                loaders.rg_tasks()  # reports a missing reasoning-gym
            rows.append(
                SuiteInfo(
                    name=spec,
                    description=desc,
                    scorer=d.scorer.name,
                    validation=sizes.validation,
                    test=sizes.test,
                )
            )
        except MissingExtraError as e:
            rows.append(
                SuiteInfo(
                    name=spec,
                    description=desc,
                    scorer=d.scorer.name,
                    validation=None,
                    test=None,
                    status=f"missing: {e.install}",
                )
            )
    return rows
