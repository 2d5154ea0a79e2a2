"""The deepspeed engine's options, its generated DeepSpeed config and its lazy import: no
launcher, no process group (one subprocess builds a world-size-1 engine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dmpo.backends.deepspeed_engine import (
    INSTALL_HINT,
    DeepSpeedOptions,
    deepspeed_config,
    shard_range,
)
from dmpo.cli import main as cli_main
from dmpo_core.errors import ConfigError
from dmpo_core.registry import get_registry
from tests.distributed.conftest import ROOT

HP = dict(lr=2e-4, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, world_size=8, bf16=True, on_cpu=False)


def test_generated_config_carries_our_optimizer_clipping_and_one_step_per_update():
    config, notices = deepspeed_config(DeepSpeedOptions(), **HP)
    assert notices == []
    assert config["optimizer"] == {"type": "AdamW", "params": {"lr": 2e-4, "betas": [0.9, 0.99], "weight_decay": 0.1,
                                                               "eps": 1e-8}}
    assert config["gradient_clipping"] == 1.0
    assert config["managed_gradient_accumulation"] is False  # step() is the boundary, however many backwards
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["train_batch_size"]) == (1, 1, 8)  # DeepSpeed checks micro * accumulation * ranks = batch
    assert config["bf16"] == {"enabled": True}
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_param_persistence_threshold"] == 100_000
    assert "offload_optimizer" not in zero and "offload_param" not in zero
    assert "scheduler" not in config  # the warm-up schedule is a client scheduler (lr_factor)


def test_generated_config_options():
    opts = DeepSpeedOptions(zero_stage=3, offload_optimizer="cpu", offload_parameters="cpu", persistence_threshold=0)
    config, _ = deepspeed_config(opts, **{**HP, "grad_clip": 0.0, "on_cpu": True}, adapter_numel=4096)
    zero = config["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": False}
    assert zero["stage3_param_persistence_threshold"] == 4096  # the largest adapter tensor stays whole
    assert config["gradient_clipping"] == 0.0
    assert "torch_adam" not in config["optimizer"]["params"]  # offloaded: DeepSpeed's CPU Adam
    plain, _ = deepspeed_config(DeepSpeedOptions(zero_stage=2), **{**HP, "on_cpu": True})
    assert plain["optimizer"]["params"]["torch_adam"] is True  # CPU without offload: torch's AdamW
    assert "stage3_param_persistence_threshold" not in plain["zero_optimization"]


def test_a_config_file_is_merged_over_ours_and_each_replaced_key_of_ours_is_said(tmp_path):
    user = {"optimizer": {"params": {"lr": 1e-5}}, "gradient_clipping": 0.5,
            "zero_optimization": {"reduce_bucket_size": 1000}}
    config, notices = deepspeed_config(DeepSpeedOptions(), **HP, user=user)
    assert config["optimizer"]["params"] == {"lr": 1e-5, "betas": [0.9, 0.99], "weight_decay": 0.1, "eps": 1e-8}
    assert config["zero_optimization"]["reduce_bucket_size"] == 1000 and config["zero_optimization"]["stage"] == 3
    assert notices == ["config_file sets optimizer.params.lr=1e-05, which replaces 0.0002 from optim.lr",
                       "config_file sets gradient_clipping=0.5, which replaces 1.0 from optim.grad_clip"]


def problems_of(**options) -> list[str]:
    with pytest.raises(ConfigError) as err:
        get_registry().validate("engine", "deepspeed", options, path="engine_options")
    return list(err.value.problems)


@pytest.mark.parametrize(("options", "needle"), [
    ({"zero_stage": 5}, "engine_options.zero_stage=5: use one of 2, 3"),
    ({"zero_stage": True}, "engine_options.zero_stage=True: must be an integer"),
    ({"offload_optimizer": "nvme"}, "engine_options.offload_optimizer='nvme': use one of none, cpu"),
    ({"zero_stage": 2, "offload_parameters": "cpu"}, "offload_parameters='cpu': only ZeRO-3 partitions weights"),
    ({"zero_stage": 2, "persistence_threshold": 10}, "persistence_threshold=10: a ZeRO-3 setting"),
    ({"persistence_threshold": -1}, "engine_options.persistence_threshold=-1: use a whole number"),
    ({"bf16": "yes"}, "engine_options.bf16='yes'"),
    ({"config_file": "no/such.json"}, "config_file='no/such.json': no such file"),
])
def test_bad_options_are_refused_naming_the_field(options, needle):
    assert any(needle in p for p in problems_of(**options)), problems_of(**options)


@pytest.mark.parametrize(("content", "needle"), [
    ("{not json", "not a readable JSON file"),
    ("[1, 2]", "must hold a JSON object"),
    (json.dumps({"scheduler": {"type": "WarmupLR"}}), "sets scheduler, which use optim.warmup_steps"),
    (json.dumps({"gradient_accumulation_steps": 4}), "sets gradient_accumulation_steps, which the engine sets it"),
    (json.dumps({"zero_optimization": {"stage": 1}}), "sets zero_optimization.stage, which use engine_options.zero_stage"),
])
def test_a_bad_config_file_is_refused_before_anything_loads(tmp_path, content, needle):
    path = tmp_path / "ds.json"
    path.write_text(content)
    assert any(needle in p for p in problems_of(config_file=str(path))), problems_of(config_file=str(path))


def test_a_good_config_file_passes(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}}))
    assert get_registry().validate("engine", "deepspeed", {"config_file": str(path)})["config_file"] == str(path)


@pytest.mark.parametrize("n", range(0, 13))
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_contiguous_in_rank_order_and_cover_every_index_once(n, world):
    shards = [shard_range(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize(("option", "needle"), [
    ("engine_options.zero_stage=5", "engine_options.zero_stage=5: use one of 2, 3"),
    ("engine_options={zero_stage: 2, offload_parameters: cpu}", "only ZeRO-3 partitions weights"),
    ("engine_options.config_file=missing.json", "engine_options.config_file='missing.json'"),
])
def test_cli_reports_a_bad_engine_option_in_one_line_before_the_model_loads(tmp_path, option, needle):
    cli_main._add_builtin_commands()
    result = CliRunner().invoke(cli_main.cli, ["train", "--output-dir", str(tmp_path / "r"), "--engine", "deepspeed",
                                               "--set", option])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert needle in result.output
    assert not (tmp_path / "r").exists()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={k: v for k, v in {**os.environ, "PYTHONWARNINGS": "ignore", **env}.items()
                               if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")})


def test_listing_plugins_does_not_import_deepspeed():
    proc = run_python("import sys; from dmpo_core.registry import get_registry; r = get_registry(); "
                      "r.get('engine', 'deepspeed'); print('deepspeed' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_without_deepspeed_building_the_engine_is_one_line_naming_the_install():
    proc = run_python(
        "import sys; sys.modules['deepspeed'] = None\n"
        "from dmpo.backends.deepspeed_engine import import_deepspeed\n"
        "from dmpo_core.errors import InvalidArgumentError\n"
        "try:\n    import_deepspeed()\nexcept InvalidArgumentError as err:\n    print(err)\n")
    assert proc.returncode == 0, proc.stderr
    assert INSTALL_HINT in proc.stdout and len(proc.stdout.strip().splitlines()) == 1


def test_one_process_without_a_launcher_is_world_size_one_and_a_config_file_applies(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"params": {"lr": 1e-5}}, "zero_optimization": {"reduce_bucket_size": 1000}}))
    proc = run_python(
        "import torch, warnings\n"
        "warnings.simplefilter('always')\n"
        "from dmpo_core.registry import get_registry\n"
        "from dmpo_core.training.build import load_policy\n"
        "p = load_policy('llada', 'builtin:sudoku-tiny', {})\n"
        f"e = get_registry().get('engine', 'deepspeed').factory(p, lr=1e-3, zero_stage=2, config_file={str(path)!r})\n"
        "ids = torch.randint(3, 100, (2, 8))\n"
        "p.train(True); e.backward(p.current_logits(ids, torch.ones_like(ids)).logsumexp(-1).mean())\n"
        "print(e.config['zero_optimization']['reduce_bucket_size'], e.lr)\n"
        "print(e.rank, e.world_size, e.is_main, e.rng_mode, e.shard(5), e.step() > 0, e.all_gather(ids).shape[0])\n",
        DS_ACCELERATOR="cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["1000 1e-05", "0 1 True keyed range(0, 5) True 2"]
    assert "config_file sets optimizer.params.lr=1e-05, which replaces 0.001 from optim.lr" in proc.stderr
