"""`load_suite`: suite definitions from `evals/*.yaml`, disjoint deterministic splits, user files.

Spec forms: a defined suite (`gsm8k`), a family member (`rg/countdown`), or a path to a JSONL/CSV
file. Options follow a `?` as `key=value` pairs joined by `&` (`rg/countdown?min_numbers=3`,
`data.jsonl?input=question&target=answer&scorer=numeric`), or come as keyword arguments.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, PrivateAttr

from agentmeta._paths import data_dir
from agentmeta.errors import ConfigError, DataError
from agentmeta.eval import loaders
from agentmeta.eval.audit import ScoreFn, apply_builtin_checks, item_problems, needs_target
from agentmeta.eval.types import SPLITS, Sample, ScorerSpec, SplitName, SplitSizes, Suite
from agentmeta.registry import registry

log = logging.getLogger(__name__)

USER_FILE_SUFFIXES = (".jsonl", ".json", ".csv")


class SuiteDef(BaseModel):
    """A suite definition: one `evals/<name>.yaml` file, a YAML file anywhere
    (`--suite path/to/suite.yaml`), or `register_suite(...)` from Python or a plugin."""

    name: str
    """Spec name (a family is used as `name/<task>`)."""
    description: str = ""
    """One line."""
    loader: str
    """Where the samples come from: a built-in loader (`gsm8k`, `mmlu`, `reasoning_gym`, ...),
    `file` (a JSONL/CSV/JSON file: `options.path`, relative to the YAML file), or
    `package.module:function` (fixed: `function(options) -> list[Sample]`; procedural:
    `function(task, options, seed) -> Iterator[Sample]`)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Fixed options of the loader (for `file`: path, input, target, id, train, validation)."""
    procedural: bool = False
    """Samples are generated (seeded), not read from a fixed file."""
    family: bool = False
    """The spec takes a task after a slash."""
    requires: str | None = None
    """Distribution that holds the data or the generators."""
    scorer: ScorerSpec = Field(default_factory=ScorerSpec)
    """How answers are scored."""
    sizes: dict[str, int | Literal["rest"]] = Field(
        default_factory=lambda: dict[str, int | Literal["rest"]](validation=128, train=128, test="rest")
    )
    """Split sizes; `rest` takes every remaining sample (fixed data only)."""
    filters: dict[str, str] = Field(default_factory=dict)
    """Options that select samples *after* the splits are cut, as option -> metadata key
    (`subjects: subject` for MMLU), so a filtered suite's splits are subsets of the full ones."""
    examples: list[str] = Field(default_factory=list)
    """Example tasks of a family."""


    _load: Callable[..., Any] | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)

    def load_fn(self) -> Callable[..., Any]:
        """The function that yields this suite's samples (see `loader`)."""
        if self._load is not None:
            return self._load
        table = loaders.STREAMS if self.procedural else loaders.FIXED
        if self.loader in table:
            return table[self.loader]
        module, colon, attr = self.loader.partition(":")
        if colon and module and attr:
            try:
                return cast(Callable[..., Any], getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"suite {self.name}: cannot load {self.loader!r}: {e}") from e
        raise ConfigError(
            f"suite {self.name}: unknown loader {self.loader!r}; use one of {', '.join(sorted(table))}, "
            "file, or package.module:function"
        )


def _register_shipped() -> None:
    """Register every suite defined under `evals/` (runs when this module is imported)."""
    for path in sorted(data_dir("evals").glob("*.yaml")):
        d = read_suite_yaml(path)
        registry.add("suite", d.name, d, d.description)


def read_suite_yaml(path: str | Path) -> SuiteDef:
    """A suite definition from a YAML file (the fields of `SuiteDef`; `name` defaults to the file's stem)."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"suite definition {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError("expected a mapping of SuiteDef fields")
        data.setdefault("name", path.stem)
        d = SuiteDef.model_validate(data)
    except Exception as e:  # noqa: BLE001 - a broken definition must name its file
        first = str(e).strip().splitlines()
        raise ConfigError(f"suite definition {path} is invalid: {' '.join(first[:3])}") from e
    d._base_dir = path.parent
    return d


def register_suite(
    name: str,
    load: Callable[..., Any],
    *,
    scorer: str | ScorerSpec = "exact",
    sizes: dict[str, int | Literal["rest"]] | None = None,
    description: str = "",
    procedural: bool = False,
    family: bool = False,
    filters: dict[str, str] | None = None,
) -> SuiteDef:
    """Register a suite from Python (or a plugin): `load(options) -> list[Sample]` for fixed data,
    `load(task, options, seed) -> Iterator[Sample]` when `procedural`. Splits, label checks, limits
    and seeds then work as for the shipped suites."""
    spec = scorer if isinstance(scorer, ScorerSpec) else ScorerSpec(name=scorer)
    d = SuiteDef(
        name=name, description=description, loader=f"{getattr(load, '__module__', '')}:{load.__name__}",
        procedural=procedural, family=family, scorer=spec, filters=filters or {},
        **({"sizes": sizes} if sizes is not None else {}),
    )  # fmt: skip
    d._load = load
    registry.add("suite", name, d, description)
    return d


def suite_defs() -> dict[str, SuiteDef]:
    """Every registered suite (shipped, plugins, `register_suite`), by name."""
    return {e.name: e.obj for e in registry.entries("suite")}


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


def _size(sizes: dict[str, int | Literal["rest"]], split: str, default: int | Literal["rest"]) -> Any:
    return sizes.get(split, default)


def _resolve_sizes(sizes: dict[str, int | Literal["rest"]], total: int | None) -> SplitSizes:
    """Sizes of the three splits: validation first, then train, then test (`rest` takes what is left)."""
    val = _size(sizes, "validation", 128)
    train = _size(sizes, "train", 128)
    test = _size(sizes, "test", "rest")
    if total is None:  # procedural: no "rest"
        pick = lambda v, d: int(v if v != "rest" else d)  # noqa: E731
        return SplitSizes(validation=pick(val, 128), train=pick(train, 128), test=pick(test, 512))
    v = min(int(val), total) if val != "rest" else total
    tr = min(int(train), total - v) if train != "rest" else 0
    t = total - v - tr if test == "rest" else min(int(test), total - v - tr)
    if train == "rest":
        tr = total - v - t
    return SplitSizes(validation=v, train=tr, test=t)


def select_samples(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """`limit` samples chosen by `seed`, kept in split order."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 0:
        raise ConfigError(f"limit must be >= 0; got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in chosen]


def _check_unique(name: str, samples: list[Sample]) -> None:
    seen: set[str] = set()
    for smp in samples:
        if smp.id in seen:
            raise DataError(f"suite {name}: sample id {smp.id!r} appears twice; sample ids must be unique")
        seen.add(smp.id)


def _fixed_splits(
    name: str, pool: list[Sample] | dict[str, list[Sample]], sizes: dict[str, int | Literal["rest"]]
) -> tuple[dict[str, list[Sample]], SplitSizes]:
    """Cut fixed data into validation, train and test, in the order of a hash of each sample id.

    A dict pool has a native `test` part (ARC's evaluation tasks) and a `dev` part cut into
    validation and train.
    """
    if isinstance(pool, dict):
        _check_unique(name, [x for part in pool.values() for x in part])
        dev = sorted(pool["dev"], key=lambda x: _hash_key(name, x.id))
        test = sorted(pool["test"], key=lambda x: _hash_key(name, x.id))
        want_test = _size(sizes, "test", "rest")
        test = test if want_test == "rest" else test[: int(want_test)]
        dev_sizes = _resolve_sizes({**sizes, "test": 0, "train": _size(sizes, "train", "rest")}, len(dev))
        out = {
            "validation": dev[: dev_sizes.validation],
            "train": dev[dev_sizes.validation : dev_sizes.validation + dev_sizes.train],
            "test": test,
        }
        return out, SplitSizes(validation=len(out["validation"]), train=len(out["train"]), test=len(test))
    _check_unique(name, pool)
    ordered = sorted(pool, key=lambda x: _hash_key(name, x.id))
    resolved = _resolve_sizes(sizes, len(ordered))
    v, tr = resolved.validation, resolved.train
    return {
        "validation": ordered[:v],
        "train": ordered[v : v + tr],
        "test": ordered[v + tr : v + tr + resolved.test],
    }, resolved


def stream_split_of(name: str, text: str) -> str:
    """The split a generated sample belongs to, from a hash of its text: half validation, a
    quarter train, a quarter test (validation is the same half as before train existed)."""
    key = _hash_key(name, text)
    if int(key[:2], 16) < 128:
        return "validation"
    return "train" if int(key[2:4], 16) < 128 else "test"


def _stream_split(
    name: str,
    d: SuiteDef,
    task: str | None,
    options: dict[str, Any],
    split: str,
    count: int,
    seed: int,
    check: ScoreFn | None | bool,
    dropped: Counter[str],
) -> list[Sample]:
    """First `count` distinct generated samples whose text hashes into `split` and pass the
    built-in label checks (`check` False: no checks; None: checks without the scorer)."""
    stream = d.load_fn()(task, options, seed)
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
        if stream_split_of(name, sample.input) != split:
            continue
        key = _hash_key(name, sample.input)
        if key in seen:
            continue
        seen.add(key)
        if check is not False:
            problems = item_problems(sample, check or None, needs_target(d.scorer.name))
            if problems:
                dropped[problems[0][0]] += 1
                continue
        out.append(sample)
    return out


def load_suite(
    spec: str,
    split: str = "validation",
    limit: int | None = None,
    seed: int = 0,
    *,
    checks: bool = True,
    **options: Any,
) -> Suite:
    """Load one split of a suite.

    `split` is `train` (demonstrations, proposer feedback, training loops), `validation`
    (selection), `test` (confirmation only) or `all` (the three). Splits are fixed and never
    overlap; `seed` picks which `limit` samples are taken (and, for procedural suites, seeds the
    generator). Items that fail a built-in label check (`agentmeta.eval.audit`) are dropped and
    counted in `Suite.dropped`; `checks=False` keeps them (for auditing). Options come from the
    spec (`rg/countdown?min_numbers=3`) and from keyword arguments.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0; got {limit}")
    base, spec_options = parse_spec(spec)
    opts = {**spec_options, **options}
    if base.lower().endswith((".yaml", ".yml")):
        d = read_suite_yaml(base)
        if d.loader == "file":
            return _file_def_suite(d, base, opts, split, limit, seed, checks)
        return _load_defined(d, base, d.name, "", opts, split, limit, seed, checks)
    from agentmeta.eval.user_suites import _looks_like_file, _user_suite

    if _looks_like_file(base):
        return _user_suite(base, opts, split, limit, seed, checks)
    name, _, task = base.partition("/")
    d = suite_defs().get(name)
    if d is not None and d.loader == "file" and not task:
        return _file_def_suite(d, base, opts, split, limit, seed, checks)
    if d is None or d.family != bool(task):
        hint = (
            f" ({name} needs a task, e.g. {name}/{d.examples[0]})"
            if d is not None and d.family and d.examples
            else ""
        )
        raise ConfigError(
            f"unknown suite {spec!r}{hint}; available: {', '.join(available_suites())}, "
            "a suite .yaml file, or a path to a .jsonl/.csv file"
        )
    return _load_defined(d, base, name, task, opts, split, limit, seed, checks)


def _file_def_suite(
    d: SuiteDef, base: str, opts: dict[str, Any], split: str, limit: int | None, seed: int, checks: bool
) -> Suite:
    """A definition whose loader is `file`: the data file of `options.path`, with its scorer."""
    merged = {**d.options, **opts}
    path = merged.pop("path", None)
    if not path:
        raise ConfigError(f"suite {d.name}: loader 'file' needs options.path (the data file)")
    full = Path(path) if Path(path).is_absolute() or d._base_dir is None else d._base_dir / path
    merged.setdefault("scorer", d.scorer.name)
    if d.scorer.args:
        merged.setdefault("scorer_args", d.scorer.args)
    from agentmeta.eval.user_suites import _user_suite

    suite = _user_suite(str(full), merged, split, limit, seed, checks)
    return suite.model_copy(update={"name": canonical_spec(base, opts), "description": d.description})


def _load_defined(
    d: SuiteDef,
    base: str,
    name: str,
    task: str,
    opts: dict[str, Any],
    split: str,
    limit: int | None,
    seed: int,
    checks: bool,
) -> Suite:
    scorer = d.scorer
    if d.family:
        scorer = ScorerSpec(name=scorer.name, args={**scorer.args, "task": task, "options": opts})
    parts = ["validation", "train", "test"] if split == "all" else [split]
    dropped: Counter[str] = Counter()
    score_fn = _gold_scorer(scorer) if checks else None
    if d.procedural:
        sizes = _resolve_sizes(d.sizes, None)
        samples: list[Sample] = []
        for part in parts:
            count = getattr(sizes, part) if limit is None else min(limit - len(samples), getattr(sizes, part))
            if count > 0:
                samples += _stream_split(
                    base, d, task or None, opts, part, count, seed, score_fn if checks else False, dropped
                )
    else:
        unknown = sorted(set(opts) - set(d.filters))
        if unknown:
            valid = f"; its options: {', '.join(sorted(d.filters))}" if d.filters else ""
            raise ConfigError(f"suite {name} takes no option {', '.join(unknown)}{valid}")
        if checks:
            pool, dropped = _checked_pool(name, lambda: d.load_fn()(dict(d.options)), score_fn)
        else:
            pool = d.load_fn()(dict(d.options))
        splits, sizes = _fixed_splits(name, pool, d.sizes)
        if any(k in opts for k in d.filters):
            splits = {k: _filtered(name, d, v, opts) for k, v in splits.items()}
            if not any(splits.values()):
                raise ConfigError(f"{name}: no samples match {opts}")
            sizes = SplitSizes(**{k: len(v) for k, v in splits.items()})
        chosen = [x for part in parts for x in splits[part]]
        samples = select_samples(chosen, limit, seed)
    return Suite(
        name=canonical_spec(base, opts),
        split=cast(SplitName, split),
        samples=samples,
        scorer=scorer,
        sizes=sizes,
        description=d.description,
        seed=seed,
        dropped=dict(dropped),
    )


def _gold_scorer(scorer: ScorerSpec) -> ScoreFn | None:
    """The scorer the built-in gold check uses: the suite's own, except code (needs the sandbox:
    `agentmeta suites check` runs that one)."""
    if scorer.name == "code":
        return None
    from agentmeta.eval.scorers import build_scorer

    return build_scorer(scorer)


def _checked_pool(
    name: str, load: Callable[[], list[Sample] | dict[str, list[Sample]]], score: ScoreFn | None
) -> tuple[Any, Counter[str]]:
    """Fixed data after the built-in label checks."""
    pool = load()
    dropped: Counter[str] = Counter()
    if isinstance(pool, dict):
        out: Any = {}
        for part, items in pool.items():
            out[part], counts = apply_builtin_checks(items, score)
            dropped.update(counts)
        # native parts can share an input (ARC has one task in both sets): the test part keeps it
        in_test = {x.input.strip() for x in out.get("test", [])}
        for part in out:
            if part != "test":
                kept = [x for x in out[part] if x.input.strip() not in in_test]
                if len(kept) < len(out[part]):
                    dropped["split_overlap"] += len(out[part]) - len(kept)
                out[part] = kept
    else:
        out, dropped = apply_builtin_checks(pool, score)
    if dropped:
        log.info("%s: %d items dropped by label checks (%s)", name, sum(dropped.values()), dict(dropped))
    return out, dropped


def _filtered(name: str, d: SuiteDef, samples: list[Sample], opts: dict[str, Any]) -> list[Sample]:
    out = samples
    for option, meta_key in d.filters.items():
        if option not in opts:
            continue
        value = opts[option]
        wanted = {value} if isinstance(value, str) else {str(v) for v in value}
        out = [x for x in out if str(x.metadata.get(meta_key, "")) in wanted]
    return out


def suite_sizes(spec: str) -> SplitSizes:
    """Full validation and test sizes of a suite (loads fixed data; procedural suites are not generated)."""
    return load_suite(spec, limit=0).sizes or SplitSizes(validation=0, test=0)


# ----------------------------------------------------------------------------- user files


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
    train: int | None = None
    """Train split size (None if the data package is missing)."""
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
                    train=sizes.train,
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


_register_shipped()
