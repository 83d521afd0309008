"""Training loops without training: episodes, truncation, reward adaptation, settings, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentmeta.errors import ConfigError
from agentmeta.eval.types import Sample, ScorerSpec, Suite
from agentmeta.prompts import render
from agentmeta.train.common import load_settings, resolve_base, staged_output
from agentmeta.train.grpo import ConductorReward, SuiteReward, build_rewards, format_reward, grpo_prompt
from agentmeta.train.metaicl import KShotAgent, build_episodes, fit_episode, format_prompt

pytestmark = pytest.mark.filterwarnings("error::FutureWarning")  # TRL configs built without one


def words(prompt: str, completion: str) -> int:
    return len((prompt + " " + completion).split())


def samples(task: str, n: int) -> list[Sample]:
    return [Sample(id=f"{task}/{i}", input=f"{task} question {i}", target=f"a{i}") for i in range(n)]


def test_metaicl_templates_render():
    assert render("metaicl-demo", input="2+2", target="4") == "Input: 2+2\nAnswer: 4\n"
    text = format_prompt([Sample(id="d", input="1+1", target="2")], "3+3")
    assert text.index("Input: 1+1\nAnswer: 2") < text.index("Input: 3+3")
    assert text.rstrip().endswith("Answer: <your answer>")


def test_fit_episode_drops_oldest_demonstrations_first_never_the_query():
    demos = samples("t", 4)
    query = Sample(id="q", input="the query " * 5, target="x")
    full = fit_episode("t", demos, query, 10_000, words)
    assert full is not None and full.dropped == 0 and len(full.demos) == 4
    limit = full.length - 1
    ep = fit_episode("t", demos, query, limit, words)
    assert ep is not None and ep.dropped == 1
    assert [d.id for d in ep.demos] == ["t/1", "t/2", "t/3"]  # t/0, farthest from the query, went first
    assert ep.length <= limit and ep.prompt.count("the query") == 5  # the query is whole
    alone = fit_episode("t", [], query, 10_000, words)
    assert alone is not None
    assert fit_episode("t", demos, query, alone.length, words).demos == []
    assert fit_episode("t", demos, query, alone.length - 1, words) is None  # never cut the query


def test_build_episodes_k_demonstrations_of_one_task_then_a_query():
    tasks = {"a": samples("a", 6), "b": samples("b", 6)}
    eps = build_episodes(tasks, k=3, n_episodes=8, max_length=10_000, length=words, seed=1)
    assert len(eps) == 8 and {e.task for e in eps} == {"a", "b"}
    for e in eps:
        assert len(e.demos) == 3 and e.query.id not in {d.id for d in e.demos}
        assert all(d.id.startswith(e.task + "/") for d in e.demos) and e.query.id.startswith(e.task + "/")
        assert (
            e.completion == f"Answer: {e.query.target}" and e.query.target not in e.prompt.split("Input:")[-1]
        )
    again = build_episodes(tasks, k=3, n_episodes=8, max_length=10_000, length=words, seed=1)
    assert [e.prompt for e in again] == [e.prompt for e in eps]


def test_build_episodes_refuses_k_larger_than_the_demonstrations():
    with pytest.raises(ConfigError, match="k=5"):
        build_episodes({"a": samples("a", 5)}, k=5, n_episodes=2, max_length=10_000, length=words)
    with pytest.raises(ConfigError, match="no episode fits"):
        build_episodes({"a": samples("a", 5)}, k=1, n_episodes=2, max_length=2, length=words)


def test_kshot_agent_uses_the_same_demonstrations_for_every_query():
    from agentmeta.models import get_model

    m = get_model("mock", outputs=lambda req: "Answer: ok")
    agent = KShotAgent(samples("d", 2), max_length=10_000, length=words)
    assert agent.run("q1", m) == "Answer: ok"
    prompt = m.provider.requests[-1].messages[-1].content
    assert "Input: d question 0\nAnswer: a0" in prompt and "Input: q1" in prompt


def suite(scorer: str = "exact") -> Suite:
    return Suite(
        name="toy",
        samples=[Sample(id="s1", input="2+2", target="4"), Sample(id="s2", input="3+3", target="6")],
        scorer=ScorerSpec(name=scorer),
    )


def test_suite_reward_is_the_scorer_value_and_records_calls():
    s = suite("numeric")
    reward = SuiteReward(s)
    completions = [
        [{"role": "assistant", "content": "Answer: 4"}],
        [{"role": "assistant", "content": "I think 5"}],
        "Answer: 6",
    ]
    got = reward(["p"] * 3, completions, sample_id=["s1", "s1", "s2"])
    want = [
        s.score(t, smp).value
        for t, smp in [("Answer: 4", s.samples[0]), ("I think 5", s.samples[0]), ("Answer: 6", s.samples[1])]
    ]
    assert got == want == [1.0, 0.0, 1.0]
    assert [c[2] for c in reward.calls] == got and reward.__name__ == "score"
    with pytest.raises(ConfigError, match="unknown sample id"):
        reward(["p"], ["x"], sample_id=["nope"])


def test_format_reward_and_weights():
    assert format_reward([], ["Answer: 3", "three", "answer:\n3"]) == [1.0, 0.0, 1.0]
    funcs, weights = build_rewards(suite(), format_weight=0.25)
    assert isinstance(funcs[0], SuiteReward) and funcs[1].fn is format_reward and weights == [1.0, 0.25]
    assert len(build_rewards(suite())[0]) == 1
    with pytest.raises(ConfigError, match="unknown target"):
        build_rewards(suite(), "planner")


def test_conductor_reward_runs_the_workflow_and_scores_the_final_answer():
    from agentmeta.conductor.core import Conductor
    from agentmeta.models import get_model

    worker = get_model("mock", outputs=lambda req: "Answer: 4")
    conductor = Conductor(get_model("mock"), expert_model=worker)
    reward = ConductorReward(suite(), [worker], conductor)
    plan = json.dumps({"steps": [{"worker": 0, "subtask": "add", "access": []}]})
    assert reward([], [plan, "not a plan", f"Here: {plan}"], sample_id=["s1", "s1", "s2"]) == [1.0, 0.0, 0.0]
    assert "0: mock" in grpo_prompt(suite().samples[0], "conductor", [worker])


def test_staged_output_renames_on_success_and_leaves_nothing_on_failure(tmp_path: Path):
    out = tmp_path / "adapter"
    with pytest.raises(RuntimeError), staged_output(out) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with staged_output(out) as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").is_file() and list(tmp_path.iterdir()) == [out]
    with pytest.raises(ConfigError, match="--overwrite"), staged_output(out):
        pass
    with staged_output(out, overwrite=True) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_settings_file_and_base_model_checks(tmp_path: Path):
    f = tmp_path / "s.yaml"
    f.write_text("trainer:\n  gradient_accumulation_steps: 2\nlora:\n  r: 4\n")
    assert load_settings(f) == {"trainer": {"gradient_accumulation_steps": 2}, "lora": {"r": 4}}
    f.write_text("optimizer: adam\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_settings(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="hf/"):
        resolve_base("openai/gpt-4o")
    assert resolve_base("hf/some/dir") == "some/dir"


def test_unknown_trainer_setting_is_a_config_error(tmp_path: Path):
    import trl

    from agentmeta.train.common import trainer_args

    with pytest.raises(ConfigError, match="no_such_setting"):
        trainer_args(trl.SFTConfig, tmp_path, {}, {"no_such_setting": 1})
    args = trainer_args(trl.GRPOConfig, tmp_path, {"max_steps": 1}, {"use_vllm": True})
    assert args.max_steps == 1 and args.use_cpu and not args.use_vllm  # no GPU here: vLLM is dropped


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmeta", "train", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["metaicl", "--train-suites", "rg/nope", "--eval-suites", "rg/spell_backward"], "unknown"),
        (
            [
                "metaicl",
                "--train-suites",
                "rg/basic_arithmetic",
                "--eval-suites",
                "rg/spell_backward",
                "--k",
                "9",
                "--samples-per-suite",
                "4",
            ],
            "k=9",
        ),
        (
            ["metaicl", "--train-suites", "rg/basic_arithmetic", "--eval-suites", "rg/basic_arithmetic"],
            "held out",
        ),
        (["grpo", "--suite", "rg/basic_arithmetic", "--model", "hf/EMPTY"], "could not load base model"),
        (["grpo", "--suite", "rg/basic_arithmetic", "--output", "EXISTS"], "--overwrite"),
    ],
)
def test_cli_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, args: list[str], needle: str):
    (tmp_path / "empty").mkdir()
    (tmp_path / "exists").mkdir()
    args = [
        a.replace("EMPTY", str(tmp_path / "empty")).replace("EXISTS", str(tmp_path / "exists")) for a in args
    ]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    p = cli(*args, "--no-register")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty", "exists"]
    assert list((tmp_path / "exists").iterdir()) == []


def test_adapter_specs_for_hf_and_vllm(tmp_path: Path):
    from agentmeta.train.common import ADAPTER_INFO, AdapterInfo, adapter_model_spec

    (tmp_path / ADAPTER_INFO).write_text(
        AdapterInfo(loop="grpo", base_model="/models/base").model_dump_json()
    )
    assert adapter_model_spec(tmp_path) == ("hf//models/base", {"adapter": str(tmp_path.resolve())})
    assert adapter_model_spec(tmp_path, "vllm") == (f"vllm//models/base:{tmp_path.resolve()}", {})
    with pytest.raises(ConfigError, match="not an agentmeta adapter"):
        adapter_model_spec(tmp_path / "nothing")


def test_infra_errors_get_no_reward_and_too_many_stop_training():
    from agentmeta.errors import InfrastructureError, ModelCallError
    from agentmeta.train.grpo import build_rewards

    s = suite("numeric")
    funcs, _ = build_rewards(s, format_weight=0.5)
    main, fmt = funcs
    main.retry_wait_s = 0.0
    real = main.value
    attempts: list[str] = []

    def flaky(text, sample):
        attempts.append(sample.id)
        if sample.id == "s2":
            raise ModelCallError("worker model server down")
        return real(text, sample)

    main.value = flaky
    completions = ["Answer: 4", "Answer: 4", "Answer: 6"]
    got = main(["p"] * 3, completions, sample_id=["s1", "s1", "s2"])
    assert got == [1.0, 1.0, None]  # not 0: TRL gives a completion no reward function scores no advantage
    assert attempts.count("s2") == 3 and main.infra_errors == 1  # retried twice, then left unscored
    assert fmt(["p"] * 3, completions, sample_id=["s1", "s1", "s2"]) == [1.0, 1.0, None]
    with pytest.raises(InfrastructureError, match="2 of 3 completions"):
        main(["p"] * 3, completions, sample_id=["s2", "s2", "s1"])
    assert isinstance(ModelCallError("x"), InfrastructureError)


@pytest.mark.parametrize(
    "yaml_text,needle",
    [
        ("optimizer: adam\n", "optimizer"),  # not a section
        ("trainer:\n  no_such_setting: 1\n", "no_such_setting"),  # not a TRL GRPOConfig field
    ],
)
def test_settings_file_with_an_unknown_key_is_one_line_naming_it(tmp_path: Path, yaml_text: str, needle: str):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml_text)
    out = tmp_path / "out"
    p = cli(
        "grpo",
        "--suite",
        "rg/basic_arithmetic",
        "--config",
        str(settings),
        "--output",
        str(out),
        "--no-register",
    )
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["settings.yaml"]


def metaicl_config(tmp_path: Path, **kw):  # noqa: ANN201
    from agentmeta.train.metaicl import MetaICLConfig

    fields = {
        "train_suites": ["rg/basic_arithmetic"],
        "eval_suites": ["rg/spell_backward"],
        "output": tmp_path / "out",
    }
    return MetaICLConfig(**{**fields, **kw})


def test_run_configs_reject_unknown_fields_and_bad_values_in_one_line(tmp_path: Path):
    from agentmeta.train.grpo import GRPOConfig

    for kw, needle in [
        ({"stepz": 3}, "'stepz' (did you mean 'steps'?)"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"k": "four"}, "k: Input should be a valid integer"),
        ({"eval_suites": ["rg/basic_arithmetic"]}, "must be held out"),
        ({"trainer": {"completion_only_loss": False}}, "completion_only_loss"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)) as e:
            metaicl_config(tmp_path, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="num_generations must be >= 2"):
        GRPOConfig(suite="rg/basic_arithmetic", output=tmp_path, num_generations=1)
    with pytest.raises(ConfigError, match="unknown target 'planner'"):
        GRPOConfig(suite="rg/basic_arithmetic", output=tmp_path, target="planner")


def test_run_configs_round_trip_through_the_adapter_metadata(tmp_path: Path):
    from agentmeta.train.common import ADAPTER_INFO, AdapterInfo
    from agentmeta.train.grpo import GRPOConfig
    from agentmeta.train.metaicl import MetaICLConfig

    configs = [
        metaicl_config(tmp_path, k=2, trainer={"gradient_accumulation_steps": 2}, lora={"r": 4}, archive=tmp_path / "a.db"),
        GRPOConfig(suite="rg/puzzle24", output="rel/out", target="conductor", workers=["mock"], format_weight=0.5),
    ]  # fmt: skip
    for config in configs:
        where = tmp_path / config.loop
        where.mkdir()
        info = AdapterInfo(loop=config.loop, base_model="/base", config=config.model_dump(mode="json"))
        (where / ADAPTER_INFO).write_text(info.model_dump_json(indent=2))
        assert type(config).from_adapter(where) == config
    assert MetaICLConfig.from_adapter(tmp_path / "metaicl").archive == str(tmp_path / "a.db")
    with pytest.raises(ConfigError, match="no MetaICLConfig settings"):
        MetaICLConfig.from_adapter(tmp_path / "grpo")


class FakeTrainer:
    """Takes what `run_loop` gives a TRL trainer; `train` runs the callbacks of three steps."""

    made: list[FakeTrainer] = []

    def __init__(self, **kwargs) -> None:  # noqa: ANN003
        self.kwargs, self.args = kwargs, kwargs["args"]
        self.state = SimpleNamespace(global_step=0, max_steps=self.args.max_steps, log_history=[])
        self.model = SimpleNamespace(
            save_pretrained=lambda d: (Path(d) / "adapter_model.safetensors").write_text("w")
        )
        FakeTrainer.made.append(self)

    def remove_callback(self, callback) -> None:  # noqa: ANN001
        pass

    def train(self) -> None:
        for step in range(1, self.args.max_steps + 1):
            self.state.global_step = step
            for cb in self.kwargs["callbacks"]:
                cb.on_step_begin(self.args, self.state, None)
                cb.on_step_end(self.args, self.state, None)
                cb.on_log(self.args, self.state, None, logs={"loss": 1.0 / step})


def fake_algorithm(config):  # noqa: ANN001, ANN201
    import trl

    from agentmeta.train.common import Algorithm

    class Fake(Algorithm):
        def trl_classes(self):  # noqa: ANN202
            return FakeTrainer, trl.SFTConfig

        def dataset(self) -> list[str]:
            return ["row"]

        def trainer_extra(self) -> dict:
            return {"reward_funcs": ["r"]}

        def metrics(self, trainer, timer) -> dict:  # noqa: ANN001
            return {"last_loss": timer.logs["loss"]}

    return Fake(config)


class FakeTokenizer:
    def save_pretrained(self, where: str) -> None:
        (Path(where) / "tokenizer.json").write_text("{}")


def test_run_loop_skeleton_writes_adapter_metadata_and_registers(tmp_path: Path, monkeypatch):
    from agentmeta.archive import Archive
    from agentmeta.train import common
    from agentmeta.train.grpo import GRPOConfig

    monkeypatch.setattr(common, "load_base", lambda base: (object(), FakeTokenizer()))
    config = GRPOConfig(suite="rg/basic_arithmetic", output=tmp_path / "out", model="hf/base-dir", steps=3,
                        trainer={"logging_steps": 5}, lora={"r": 4}, archive=str(tmp_path / "a.db"))  # fmt: skip
    seen: list[tuple[int, int]] = []
    result = common.run_loop(
        fake_algorithm(config), progress=lambda step, total, logs: seen.append((step, total))
    )
    out = tmp_path / "out"
    assert (
        result.output == str(out.resolve())
        and seen == [(1, 3), (2, 3), (3, 3)]
        and len(result.step_times) == 3
    )
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "a.db",
        "out",
    ]  # staged folder renamed, nothing left
    assert sorted(x.name for x in out.iterdir()) == [
        "adapter_model.safetensors",
        "agentmeta-adapter.json",
        "tokenizer.json",
    ]
    trainer = FakeTrainer.made[-1]
    assert (
        trainer.args.max_steps == 3 and trainer.args.learning_rate == 1e-5 and trainer.args.logging_steps == 5
    )
    assert trainer.kwargs["peft_config"].r == 4 and trainer.kwargs["reward_funcs"] == ["r"]
    info = common.load_adapter_info(out)
    assert info.loop == "grpo" and info.base_model == "base-dir" and info.steps == 3
    assert info.settings == {
        "learning_rate": 1e-5,
        "seed": 0,
        "trainer": {"logging_steps": 5},
        "lora": {"r": 4},
    }
    assert info.metrics["last_loss"] == pytest.approx(1 / 3) and "s_per_step" in info.metrics
    assert GRPOConfig.from_adapter(out) == config == GRPOConfig.model_validate(info.config)
    with Archive(tmp_path / "a.db") as arch:
        (cand,) = arch.candidates()
        assert (
            cand.id == result.candidate_id
            and cand.name == "grpo-out"
            and cand.metadata["config"] == info.config
        )


def test_run_loop_checks_trainer_and_lora_settings_before_loading_the_model(tmp_path: Path, monkeypatch):
    from agentmeta.train import common
    from agentmeta.train.grpo import GRPOConfig

    def never(base: str):  # noqa: ANN202
        raise AssertionError("the base model was loaded")

    monkeypatch.setattr(common, "load_base", never)
    for settings, needle in [
        ({"trainer": {"no_such_setting": 1}}, "no_such_setting"),
        ({"lora": {"rank": 4}}, "rank"),
    ]:
        config = GRPOConfig(
            suite="rg/basic_arithmetic", output=tmp_path / "out", model="hf/base-dir", **settings
        )
        with pytest.raises(ConfigError, match=needle) as e:
            common.run_loop(fake_algorithm(config))
        assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
