"""What both training loops share: base model resolution, staged output folders, TRL/PEFT settings,
step timing, the adapter metadata file and archive registration."""

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
from typing import Any

from pydantic import BaseModel, Field

from agentmeta.errors import ConfigError, ModelLoadError, require

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
    if not isinstance(data, dict) or set(data) - {"trainer", "lora"}:
        raise ConfigError(f"config file {path} must be a mapping with `trainer:` and/or `lora:` sections")
    out = {k: data.get(k) or {} for k in ("trainer", "lora")}
    for k, v in out.items():
        if not isinstance(v, dict):
            raise ConfigError(f"`{k}:` in {path} must be a mapping of settings; got {type(v).__name__}")
    return out


def has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def trainer_args(
    config_cls: Any, output_dir: Path, defaults: dict[str, Any], overrides: dict[str, Any]
) -> Any:
    """Build a TRL config from our defaults plus the user's `trainer:` settings (CPU-safe)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"unknown {config_cls.__name__} setting(s) {', '.join(unknown)}; see the TRL documentation"
        )
    kwargs = {"report_to": "none", "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}
    kwargs.update(defaults)
    kwargs.update(overrides)
    kwargs["output_dir"] = str(output_dir)
    if not has_gpu():
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
        if kwargs.pop("use_vllm", False):
            log.warning("use_vllm needs a CUDA GPU; generating with transformers instead")
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {config_cls.__name__} settings: {str(e).splitlines()[0]}") from e


def lora_config(overrides: dict[str, Any]) -> Any:
    peft = require("peft", INSTALL, "peft")
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


def check_run(steps: int, output: str | Path, overwrite: bool) -> None:
    """The checks every loop makes before loading anything: a step count and a free output dir."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1; got {steps}")
    if Path(output).expanduser().exists() and not overwrite:
        raise ConfigError(f"output {output} already exists: choose another directory or pass --overwrite")


def before_after(before: Any, after: Any, seed: int, **extra: Any) -> dict[str, Any]:
    """One row of a before/after table: both means and the paired-bootstrap difference (after - before)."""
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
