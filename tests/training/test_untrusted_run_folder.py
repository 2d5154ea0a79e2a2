"""Nothing from a run folder executes: a planted ``trainer.pt`` is refused on resume, and its
payload never runs (reliability item 1)."""

from __future__ import annotations

import builtins

import pytest
import torch

from dmpo_core.errors import CheckpointError
from dmpo_core.training import TrainConfig, train
from dmpo_core.training import checkpoint as ckpt
from tests.training.test_loop import SMALL, make_components


class _Payload:
    """Pickles to ``exec(code)``: what an attacker would plant in a shared run folder."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _plant(path, marker) -> None:
    """Replace ``trainer.pt`` with a payload and re-sign the checksums, as an attacker who can
    write the run folder would (the checksums catch damage, not intent)."""
    import json

    code = f"open({str(marker)!r}, 'w').write('executed')"
    torch.save({"step": 2, "payload": _Payload(code)}, path)
    (path.parent / ckpt.CHECKSUMS).write_text(json.dumps(ckpt.checksums(path.parent)))


def test_planted_trainer_state_is_refused_and_its_code_never_runs(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 2, "eval_size": 0})
    train(cfg, make_components(cfg), tmp_path / "run")
    latest = ckpt.latest_checkpoint(tmp_path / "run")
    marker = tmp_path / "pwned"
    _plant(latest / "trainer.pt", marker)

    cfg4 = TrainConfig.from_dict({**SMALL, "total_steps": 4, "eval_size": 0})
    with pytest.raises(CheckpointError, match="cannot be read safely") as err:
        train(cfg4, make_components(cfg4), tmp_path / "run", resume=True)
    assert not marker.exists(), "the planted payload ran"
    assert "\n" not in str(err.value)  # one line for the CLI


def test_genuine_trainer_state_loads_with_tensors_only(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 2, "eval_size": 0})
    train(cfg, make_components(cfg), tmp_path)
    state = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path))
    assert state["step"] == 2 and isinstance(state["generator"], torch.Tensor)
    # the same file also loads under torch's own restricted unpickler, directly
    torch.load(ckpt.latest_checkpoint(tmp_path) / "trainer.pt", weights_only=True)


def test_trainer_state_that_is_not_a_mapping_is_refused(tmp_path):
    (tmp_path / "trainer.pt").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "trainer.pt")
    with pytest.raises(CheckpointError, match="not the trainer state mapping"):
        ckpt.load_trainer_state(tmp_path)
