"""What every training loop shares, written once: the run settings every loop takes (`RunConfig`),
the loop skeleton (`run_loop`: resolve the base model, check the run, staged output folder, load
the base model, before-evaluation, dataset, TRL trainer with LoRA, timed training, adapter and
metadata, after-evaluation with a before/after table, archive registration) and its helpers.

An algorithm (`metaicl.MetaICL`, `grpo.GRPO`) is an `Algorithm` subclass holding only what
differs: its data, dataset, TRL trainer class and settings, evaluation agents and metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentmeta.errors import ConfigError, ModelLoadError, require, unknown_keys

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

ADAPTER_INFO = "agentmeta-adapter.json"
INSTALL = "pip install trl peft"
DEFAULT_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "task_type": "CAUSAL_LM",
}
ProgressFn = Callable[[int, int, dict[str, float]], None]
"""`progress(step, max_steps, logs)`: called after each optimizer step with the latest logs."""


class AdapterInfo(BaseModel):
    """The metadata file saved next to a trained adapter."""

    loop: str
    """Which loop trained it: `metaicl` or `grpo`."""
    base_model: str
    """Directory (or hub id) of the base model the adapter applies to."""
    data: dict[str, Any] = Field(default_factory=dict)
    """What it was trained on: suites, k, sample counts, target."""
    steps: int = 0
    """Optimizer steps taken."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The trainer and LoRA settings that differ from TRL's defaults."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Training metrics (last loss, rewards, seconds per step) and before/after evaluations."""
    created_at: float = Field(default_factory=time.time)
    """Unix time the adapter was written."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The run's settings (`MetaICLConfig` / `GRPOConfig` fields); `XConfig.from_adapter(dir)` reads them back."""


class TrainResult(BaseModel):
    """What a training run returns."""

    output: str
    """The adapter directory (PEFT format plus `agentmeta-adapter.json`)."""
    info: AdapterInfo
    """The metadata written with the adapter."""
    step_times: list[float] = Field(default_factory=list)
    """Seconds of each optimizer step (training only: no loading, no evaluation)."""
    candidate_id: str | None = None
    """Id of the model candidate in the archive, when registered."""
    table: list[dict[str, Any]] = Field(default_factory=list)
    """Before/after rows (suite, n, before, after, diff, low, high, p_better), when evaluated."""


class RunConfig(BaseModel):
    """The settings every training loop takes; `MetaICLConfig` and `GRPOConfig` add their own.

    An unknown field or an invalid value is a one-line `ConfigError` naming it.
    """

    model_config = ConfigDict(extra="forbid")
    loop: ClassVar[str] = ""
    """The loop these settings are for, as written in `AdapterInfo.loop`."""

    output: Path
    """Adapter directory to write (PEFT format plus `agentmeta-adapter.json`)."""
    model: str | None = None
    """Base model: `smollm2` (default: the embedded model's dense copy) or `hf/<directory or hub id>`."""
    steps: int = 10
    """Optimizer steps."""
    learning_rate: float
    """Learning rate (constant, no warm-up, unless `trainer` says otherwise)."""
    max_new_tokens: int
    """Most new tokens per generated answer."""
    eval_limit: int = 16
    """Test samples per held-out suite, scored before and after training."""
    seed: int = 0
    """Seed of the data, the training and the evaluation."""
    trainer: dict[str, Any] = Field(default_factory=dict)
    """TRL config fields over the loop's defaults (the `trainer:` section of a `--config` file)."""
    lora: dict[str, Any] = Field(default_factory=dict)
    """PEFT `LoraConfig` fields over `DEFAULT_LORA` (the `lora:` section of a `--config` file)."""
    overwrite: bool = False
    """Replace an existing `output` directory."""
    archive: str | None = None
    """Archive (path or SQLAlchemy URL) to register the adapter in as a `model` candidate; None: don't."""

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        hints = unknown_keys(data, list(cls.model_fields))
        if hints:
            raise ConfigError(f"unknown {cls.__name__} setting(s) {', '.join(hints)}")
        try:
            return handler(data)
        except ValidationError as e:
            parts = [
                f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors()
            ]
            raise ConfigError(f"invalid {cls.__name__}: {'; '.join(parts)}") from e

    @field_validator("archive", mode="before")
    @classmethod
    def _archive_path(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v

    @model_validator(mode="after")
    def _check_steps(self) -> Self:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1; got {self.steps}")
        return self

    @classmethod
    def from_adapter(cls, path: str | Path) -> Self:
        """The settings an adapter was trained with, read back from its `agentmeta-adapter.json`."""
        info = load_adapter_info(path)
        if info.loop != cls.loop or not info.config:
            raise ConfigError(f"{path} has no {cls.__name__} settings: it was written by a {info.loop} run")
        return cls.model_validate(info.config)


def load_adapter_info(path: str | Path) -> AdapterInfo:
    """Read the metadata file of an adapter written by a training loop."""
    f = Path(path) / ADAPTER_INFO
    if not f.is_file():
        raise ConfigError(f"{path} is not an agentmeta adapter: {ADAPTER_INFO} is missing")
    return AdapterInfo.model_validate_json(f.read_text(encoding="utf-8"))


def resolve_base(model: str | None) -> str:
    """The local directory (or hub id) of the base model: the embedded model's dense copy by default."""
    if model is None or model in ("smollm2", "default"):
        from agentmeta.models.hf import ensure_dense_copy

        return str(ensure_dense_copy())
    kind, sep, rest = model.partition("/")
    if kind != "hf" or not sep or not rest:
        raise ConfigError(
            f"training needs a transformers model: smollm2 or hf/<directory or hub id>; got {model!r}"
        )
    return rest


def load_base(base: str) -> tuple[Any, Any]:
    """Load the base causal LM and its tokenizer, or raise a one-line `ModelLoadError`."""
    transformers = require("transformers", "pip install transformers", "transformers")
    local = Path(base).expanduser()
    if not local.exists() and ("/" not in base or base.startswith((".", "/", "~"))):
        raise ModelLoadError(f"base model directory {base!r} does not exist")
    kwargs: dict[str, Any] = {}
    if not local.exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    try:
        tok = transformers.AutoTokenizer.from_pretrained(base, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load base model {base!r}: {str(e).splitlines()[0]}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def load_settings(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a YAML settings file: `trainer:` (TRL config fields) and `lora:` (PEFT LoraConfig fields)."""
    if path is None:
        return {"trainer": {}, "lora": {}}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with `trainer:` and/or `lora:` sections")
    unknown = sorted(str(k) for k in set(data) - {"trainer", "lora"})
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(unknown)} in config file {path}: it takes `trainer:` "
            "(TRL config fields) and/or `lora:` (LoraConfig fields)"
        )
    out = {k: data.get(k) or {} for k in ("trainer", "lora")}
    for k, v in out.items():
        if not isinstance(v, dict):
            raise ConfigError(f"`{k}:` in {path} must be a mapping of settings; got {type(v).__name__}")
    return out


def has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_fields(config_cls: Any, overrides: dict[str, Any], docs: str) -> None:
    """A one-line `ConfigError` naming the keys of `overrides` that are not fields of the dataclass."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise ConfigError(
            f"unknown {config_cls.__name__} setting(s) {', '.join(unknown)}; see the {docs} documentation"
        )


def trainer_args(
    config_cls: Any, output_dir: Path, defaults: dict[str, Any], overrides: dict[str, Any]
) -> Any:
    """Build a TRL config from our defaults plus the user's `trainer:` settings (CPU-safe)."""
    check_fields(config_cls, overrides, "TRL")
    kwargs = {"report_to": "none", "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}
    kwargs.update(defaults)
    kwargs.update(overrides)
    kwargs["output_dir"] = str(output_dir)
    if not has_gpu():
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
        if kwargs.pop("use_vllm", False):
            log.warning("use_vllm needs a CUDA GPU; generating with transformers instead")
    from agentmeta.models.hf import peft_quiet

    try:
        with peft_quiet():
            return config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {config_cls.__name__} settings: {str(e).splitlines()[0]}") from e


def lora_config(overrides: dict[str, Any]) -> Any:
    peft = require("peft", INSTALL, "peft")
    check_fields(peft.LoraConfig, overrides, "PEFT")
    try:
        return peft.LoraConfig(**{**DEFAULT_LORA, **overrides})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid LoRA settings: {str(e).splitlines()[0]}") from e


def step_timer(progress: ProgressFn | None = None) -> Any:
    """A TrainerCallback that times each optimizer step and reports progress."""
    transformers = require("transformers", "pip install transformers", "transformers")

    class StepTimer(transformers.TrainerCallback):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.times: list[float] = []
            self.logs: dict[str, float] = {}
            self._t0 = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.times.append(time.perf_counter() - self._t0)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            self.logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            if progress is not None:
                progress(state.global_step, state.max_steps, self.logs)

    return StepTimer()


def check_run(output: str | Path, overwrite: bool) -> None:
    """The check every loop makes before loading anything: a free output directory."""
    if Path(output).expanduser().exists() and not overwrite:
        raise ConfigError(f"output {output} already exists: choose another directory or pass --overwrite")


def before_after(before: Any, after: Any, seed: int, **extra: Any) -> dict[str, Any]:
    """One row of a before/after table: both means and the paired difference (after - before) with
    its CI (`compare_results`: Tango's interval for scores in [0, 1]) and P(better)."""
    from agentmeta.eval.stats import compare_results

    cmp = compare_results(after, before, seed=seed, allow_partial=True)  # n: the shared samples
    return {
        "suite": after.suite,
        "split": after.split,
        "n": cmp.n,
        **extra,
        "before": before.mean,
        "after": after.mean,
        "diff": cmp.mean_diff,
        "low": cmp.low,
        "high": cmp.high,
        "p_better": cmp.p_better,
    }


@contextlib.contextmanager
def staged_output(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder next to `output`, renamed to `output` only if the body succeeds."""
    out = Path(output).expanduser().resolve()
    if out.exists() and not overwrite:
        raise ConfigError(f"output {out} already exists: choose another directory or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def quiet(trainer: Any) -> Any:
    """Drop the trainer's own log printer: progress goes through `step_timer`."""
    transformers = require("transformers", "pip install transformers", "transformers")
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.remove_callback(transformers.ProgressCallback)
    return trainer


def save_adapter(trainer: Any, tokenizer: Any, where: Path, info: AdapterInfo) -> None:
    """Save the LoRA adapter in PEFT format, the tokenizer and the metadata file."""
    trainer.model.save_pretrained(str(where))
    tokenizer.save_pretrained(str(where))
    save_info(where, info)


def save_info(where: Path, info: AdapterInfo) -> None:
    """(Re)write the metadata file of an adapter."""
    (where / ADAPTER_INFO).write_text(info.model_dump_json(indent=2), encoding="utf-8")


def register_adapter(
    archive: Any, final: Path, info: AdapterInfo, name: str, evaluations: list[Any] | None = None
) -> str:
    """Add the adapter to an archive as a `model` candidate (plus its `EvalResult`s); returns its id."""
    from agentmeta.archive import Archive, Candidate

    store = archive if isinstance(archive, Archive) else Archive(archive)
    try:
        cand = Candidate(
            kind="model",
            name=name,
            thought=f"{info.loop} LoRA adapter on {Path(info.base_model).name}",
            source=str(final),
            model_specs={"base": f"hf/{info.base_model}", "adapter": str(final)},
            metadata=json.loads(info.model_dump_json()),
        )
        cid = store.add(cand)
        for res in evaluations or []:
            store.record_result(cid, res, primary=True)
        return cid
    finally:
        if store is not archive:
            store.close()


def set_seed(seed: int) -> None:
    transformers = require("transformers", "pip install transformers", "transformers")
    transformers.set_seed(seed)


def adapter_model_spec(path: str | Path, engine: str = "hf") -> tuple[str, dict[str, Any]]:
    """`(spec, options)` for `get_model` that serve a trained adapter on its base model.

    `hf`: `get_model("hf/<base>", adapter=<path>)`; `vllm`: `get_model("vllm/<base>:<path>")`, the
    adapter sent as a vLLM LoRA request.
    """
    info = load_adapter_info(path)
    adapter = str(Path(path).expanduser().resolve())
    if engine == "hf":
        return f"hf/{info.base_model}", {"adapter": adapter}
    if engine == "vllm":
        return f"vllm/{info.base_model}:{adapter}", {}
    raise ConfigError(f"unknown engine {engine!r}; use hf or vllm")


def load_adapter(path: str | Path, engine: str = "hf", **options: Any) -> Any:
    """The base model plus the adapter at `path`, as a `Model` (see `adapter_model_spec`)."""
    from agentmeta.models import get_model

    spec, opts = adapter_model_spec(path, engine)
    return get_model(spec, **opts, **options)


class Algorithm:
    """One training algorithm: the hooks `run_loop` calls. Subclasses hold only what differs."""

    trl_names: ClassVar[tuple[str, str]]
    """The TRL trainer class and its config class, by name."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.evals: list[tuple[Any, Any]] = []
        """(agent, held-out `Suite`) pairs scored before and after training; set by `setup`."""

    def trl_classes(self) -> tuple[Any, Any]:
        """The trainer class and its config class: `trl_names` looked up in `trl`."""
        trl = require("trl", INSTALL, "trl")
        trainer_cls, args_cls = (getattr(trl, name) for name in self.trl_names)
        return trainer_cls, args_cls

    def load_data(self) -> None:
        """Load and check the data before anything heavy is loaded, so bad input fails fast."""

    def setup(self, base: str, tokenizer: Any) -> None:
        """What needs the base model (its directory or its tokenizer): episodes, rewards, `evals`."""

    def dataset(self) -> Any:
        """The training `datasets.Dataset`."""
        raise NotImplementedError

    def trainer_settings(self) -> dict[str, Any]:
        """The loop's TRL config defaults (besides steps, learning rate and seed); `trainer:` wins."""
        return {}

    def trainer_extra(self) -> dict[str, Any]:
        """More keyword arguments of the TRL trainer (GRPO's reward functions)."""
        return {}

    def data(self) -> dict[str, Any]:
        """`AdapterInfo.data`: what it was trained on."""
        return {}

    def settings(self) -> dict[str, Any]:
        """`AdapterInfo.settings` between the learning rate and the seed."""
        return {}

    def metrics(self, trainer: Any, timer: Any) -> dict[str, Any]:
        """`AdapterInfo.metrics` from the finished training (`s_per_step` is added)."""
        return {}

    def row_extra(self) -> dict[str, Any]:
        """Columns of each before/after row between `n` and `before`."""
        return {}

    def report(
        self, where: Path, info: AdapterInfo, table: list[dict[str, Any]], before: list[Any], after: list[Any]
    ) -> None:
        """Record the before/after evaluation in `info.metrics` (and extra files in `where`)."""
        if table:
            info.metrics["eval"] = table

    def candidate_name(self, final: Path) -> str:
        """The archive candidate's name."""
        return f"{self.config.loop}-{final.name}"


def run_loop(
    algo: Algorithm, *, progress: ProgressFn | None = None, callbacks: list[Any] | None = None
) -> TrainResult:
    """Train a LoRA adapter with `algo`: the skeleton every training loop shares.

    Check the output folder and the data, the TRL and LoRA settings; load the base model; score
    the held-out samples; train with step timing (`progress` after each step, `callbacks` are more
    `TrainerCallback`s); save the adapter and its metadata; score again and tabulate before/after;
    rename the staged folder to `config.output`; register it in `config.archive`.
    """
    from agentmeta.eval.runner import evaluate
    from agentmeta.models import get_model
    from agentmeta.models.hf import peft_quiet

    config = algo.config
    check_run(config.output, config.overwrite)
    algo.load_data()
    trainer_cls, args_cls = algo.trl_classes()
    check_fields(args_cls, config.trainer, "TRL")
    peft_config = lora_config(config.lora)
    base = resolve_base(config.model)
    set_seed(config.seed)
    model, tok = load_base(base)
    algo.setup(base, tok)

    def scores(adapter: str | None = None) -> list[Any]:
        if not algo.evals:
            return []
        options = {"adapter": adapter} if adapter else {}
        m = get_model(f"hf/{base}", cache=False, shared=False, **options)
        return [
            evaluate(agent, suite, model=m, seed=config.seed, concurrency=8) for agent, suite in algo.evals
        ]

    with staged_output(config.output, config.overwrite) as tmp:
        before = scores()
        timer = step_timer(progress)
        defaults = {
            "max_steps": config.steps,
            "learning_rate": config.learning_rate,
            **algo.trainer_settings(),
            "seed": config.seed,
            "lr_scheduler_type": "constant",
            "warmup_steps": 0,
        }
        with peft_quiet():
            trainer = trainer_cls(
                model=model,
                args=trainer_args(args_cls, tmp / "trainer", defaults, config.trainer),
                train_dataset=algo.dataset(),
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[timer, *(callbacks or [])],
                **algo.trainer_extra(),
            )
            quiet(trainer).train()
        info = AdapterInfo(
            loop=config.loop,
            base_model=base,
            data=algo.data(),
            steps=int(trainer.state.global_step),
            settings={
                "learning_rate": config.learning_rate,
                **algo.settings(),
                "seed": config.seed,
                "trainer": config.trainer,
                "lora": config.lora,
            },
            metrics={
                **algo.metrics(trainer, timer),
                "s_per_step": sum(timer.times) / max(len(timer.times), 1),
            },
            config=config.model_dump(mode="json"),
        )
        save_adapter(trainer, tok, tmp, info)
        after = scores(str(tmp)) if before else []
        table = [
            before_after(b, a, config.seed, **algo.row_extra()) for b, a in zip(before, after, strict=True)
        ]
        algo.report(tmp, info, table, before, after)
        save_info(tmp, info)
    final = Path(config.output).expanduser().resolve()
    cid = None
    if config.archive is not None:
        cid = register_adapter(config.archive, final, info, algo.candidate_name(final), after)
    return TrainResult(output=str(final), info=info, step_times=timer.times, candidate_id=cid, table=table)
