"""Damaged run state never ends in a traceback, and a resume uses the newest intact checkpoint.

Checkpoints record SHA-256 checksums of their files; a resume verifies them and the trainer
state's keys, passes over a damaged checkpoint with a one-line notice, and reaches the same
weights as an uninterrupted run. Every step appears exactly once in ``metrics.jsonl`` after
kills and resumes (reliability items 4 and 5).
"""

from __future__ import annotations

import json

import pytest
import torch

from dmpo_core.errors import CheckpointError
from dmpo_core.training import TrainConfig, train
from dmpo_core.training import checkpoint as ckpt
from tests.training.test_loop import SMALL, make_components, weights_of

CFG = TrainConfig.from_dict({**SMALL, "total_steps": 4, "save_every": 1, "eval_size": 0, "keep_checkpoints": 3})


def steps_logged(run) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()
            if ln.strip() and '"eval": true' not in ln]


def kill_at(step: int):
    def on_step(record):
        if record["step"] == step:
            raise KeyboardInterrupt

    return on_step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    comp = make_components(CFG)
    train(CFG, comp, tmp_path_factory.mktemp("full"))
    return weights_of(comp)


def resume(run, notices=None):
    comp = make_components(CFG)
    train(CFG, comp, run, resume=True, on_notice=(notices.append if notices is not None else None))
    return comp


def test_a_kill_before_the_first_checkpoint_leaves_no_duplicate_records(tmp_path, uninterrupted):
    with pytest.raises(KeyboardInterrupt):
        train(CFG, make_components(CFG), tmp_path, on_step=kill_at(1))  # step 1 logged, never saved
    assert ckpt.latest_checkpoint(tmp_path) is None and steps_logged(tmp_path) == [1]
    comp = resume(tmp_path)
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, weights_of(comp)))


def test_a_torn_last_metrics_line_is_dropped_with_a_notice(tmp_path, uninterrupted):
    with pytest.raises(KeyboardInterrupt):
        train(CFG, make_components(CFG), tmp_path, on_step=kill_at(3))
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 4, "rewa')  # a kill in the middle of a write
    notices: list[str] = []
    comp = resume(tmp_path, notices)
    assert any("torn line" in n for n in notices)
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, weights_of(comp)))


def _damage_latest(run, how: str) -> None:
    latest = ckpt.latest_checkpoint(run)
    if how == "flipped-bytes":  # one byte of the stored weights, as a failing disk would
        data = bytearray((latest / "policy" / "model.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (latest / "policy" / "model.pt").write_bytes(bytes(data))
    elif how == "truncated":
        path = latest / "trainer.pt"
        path.write_bytes(path.read_bytes()[:100])
    elif how == "missing-key":
        state = ckpt.load_trainer_state(latest)
        del state["generator"]
        torch.save(state, latest / "trainer.pt")
        (latest / ckpt.CHECKSUMS).write_text(json.dumps(ckpt.checksums(latest)))  # consistent, yet incomplete
    elif how == "binary-latest":
        (run / ckpt.CHECKPOINTS / ckpt.LATEST).write_bytes(b"\xff\xfe\x00garbage")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["flipped-bytes", "truncated", "missing-key", "binary-latest"])
def test_resume_passes_over_a_damaged_checkpoint_and_reaches_the_same_weights(tmp_path, uninterrupted, how):
    with pytest.raises(KeyboardInterrupt):
        train(CFG, make_components(CFG), tmp_path, on_step=kill_at(4))  # checkpoints of steps 1..3
    _damage_latest(tmp_path, how)
    notices: list[str] = []
    comp = resume(tmp_path, notices)
    if how == "binary-latest":  # the pointer is garbled, the newest step folder is intact
        assert any("garbled" in n for n in notices)
    else:
        assert any(n.startswith("resuming from step-000002") and "step-000003 is damaged" in n for n in notices)
    assert len(notices) == 1 and "\n" not in notices[0]
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, weights_of(comp)))


def test_damage_names_what_is_wrong(tmp_path):
    train(TrainConfig.from_dict({**SMALL, "total_steps": 1, "eval_size": 0}), make_components(CFG), tmp_path)
    latest = ckpt.latest_checkpoint(tmp_path)
    assert ckpt.damage(latest) is None
    (latest / "rollout.pt").unlink()
    assert ckpt.damage(latest) == "rollout.pt is missing"


def test_no_intact_checkpoint_is_one_error_listing_each(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(CFG, make_components(CFG), tmp_path, on_step=kill_at(3))  # checkpoints of steps 1, 2
    for folder in (tmp_path / ckpt.CHECKPOINTS).glob("step-*"):
        (folder / "trainer.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="no intact checkpoint") as err:
        resume(tmp_path)
    assert "step-000002 is damaged" in str(err.value) and "step-000001 is damaged" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00\x01", b"[1, 2]"])
def test_a_garbled_config_json_is_a_one_line_error(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match="config.json") as err:
        ckpt.read_config(tmp_path)
    assert "--overwrite" in str(err.value) and "\n" not in str(err.value)
