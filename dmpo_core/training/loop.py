"""The DMPO training loop: rollout -> rewards -> log-likelihoods -> weights -> update -> log -> checkpoint.

Everything below the loop is a contract (policy, sampler, task, weighting scheme,
objective, engine), so the same loop trains any registered backend on any task with
any scheme. All randomness comes from one seeded ``torch.Generator`` whose state is
checkpointed, which makes a killed-and-resumed CPU run reach the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import errno
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from dmpo_core.contracts import (
    CURRENT_LOGP, LOG_P_OLD, LOG_RND, NEEDS, TRAJECTORY, Engine, Objective, Policy, Sampler, Task, WeightingScheme,
)
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import CheckpointError, TrainingError
from dmpo_core.protocols import evaluation_protocol
from dmpo_core.training import checkpoint as ckpt
from dmpo_core.training import ranks
from dmpo_core.training.budget import TimeBudget
from dmpo_core.training.config import TrainConfig
from dmpo_core.training.evaluate import evaluate
from dmpo_core.training.precision import stage_precision
from dmpo_core.training.recipe import Recipe, checkpoint_layouts
from dmpo_core.training.rollout import (
    decode_completions,
    eligible_positions,
    estimate_log_likelihoods,
    exact_log_likelihoods,
    rewards_tensor,
    sample_group_batch,
    score_rewards,
)


@attrs.define(kw_only=True)
class Components:
    """The built pieces of a run (see ``dmpo.cli`` for how they are made from a config)."""

    policy: Policy
    task: Task
    sampler: Sampler
    eval_sampler: Sampler
    weighting: WeightingScheme
    objective: Objective
    engine: Engine


@attrs.define(kw_only=True)
class Counters:
    """Run state that is not tensors."""

    step: int = 0
    bad_in_row: int = 0
    skipped_steps: int = 0
    reward_failures: int = 0
    last_sync_step: int = -1


StepCallback = Callable[[dict[str, Any]], None]


def batch_items(items: Sequence[Mapping[str, Any]], step: int, size: int, seed: int) -> list[Mapping[str, Any]]:
    """The ``size`` items of ``step``: consecutive slices of a per-epoch seeded permutation.

    A pure function of ``(step, seed)``, so a resumed run sees the same data.
    """
    n = len(items)
    out = []
    for pos in range(step * size, step * size + size):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(items[int(perm[offset])])
    return out


def slice_groups(batch: RolloutBatch, weights: WeightOutput, start: int, stop: int) -> tuple[RolloutBatch, WeightOutput]:
    """Rows of groups ``start..stop-1`` of a batch and its weights (gradient-accumulation chunks)."""
    rows = slice(start * batch.group_size, stop * batch.group_size)
    return batch.rows(rows), weights.rows(rows)


def step_needs(weighting: WeightingScheme, objective: Objective) -> frozenset[str]:
    """What a step must compute: the union of the components' declared ``needs``.

    Raises:
        TrainingError: a component declares a need the loop does not know.
    """
    needs = frozenset(weighting.needs) | frozenset(objective.needs)
    unknown = sorted(needs - NEEDS)
    if unknown:
        raise TrainingError(f"unknown needs {unknown} declared by the weighting scheme or objective; "
                            f"the loop computes {sorted(NEEDS)}")
    return needs


def use_exact_logp(method: str, samples: Any) -> bool:
    """Whether to use the sampler's recorded trajectory log-probs (``scoring.method``)."""
    recorded = samples.token_logp is not None and samples.commit_step is not None
    if method == "exact" and not recorded:
        raise TrainingError(
            "scoring.method=exact needs a sampler that records its decoding order and log-probs "
            "(roar, or random-remask with sampler_options.record_logp=true); use scoring.method=elbo"
        )
    return recorded and method != "elbo"


def _counters(saved: Any, path: Path) -> Counters:
    """The saved run counters, or a CheckpointError naming the file when they do not fit."""
    try:
        return Counters(**saved)
    except TypeError as err:
        raise CheckpointError(str(path / "trainer.pt"), f"holds counters this version cannot read ({err})") from err


def _trainable_snapshot(policy: Policy) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in policy.trainable_parameters()]


def _load_trainable(policy: Policy, tensors: Sequence[torch.Tensor]) -> None:
    params = list(policy.trainable_parameters())
    if len(params) != len(tensors):
        raise TrainingError(f"checkpoint holds {len(tensors)} trainable tensors, the policy has {len(params)}")
    with torch.no_grad():
        for p, t in zip(params, tensors):
            p.copy_(t.to(p.device, p.dtype))


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (flushed each time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise ckpt.no_space(self.path.parent, len(line.encode())) from err

    def truncate_after(self, step: int, notice: ckpt.Notice | None = None) -> None:
        """Drop records of steps after ``step`` (written after the checkpoint a run resumes from),
        and lines that are not JSON records (a line torn by a kill); atomically."""
        if not self.path.exists():
            return
        kept, torn = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                torn += bool(line.strip())
                continue
            if isinstance(record, dict) and int(record.get("step", 0)) <= step:
                kept.append(line)
        if torn and notice:
            notice(f"{self.path}: dropped {torn} torn line(s) (a kill during a write)")
        ckpt.atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))


def train(
    cfg: TrainConfig,
    comp: Components,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_eval: StepCallback | None = None,
    on_notice: ckpt.Notice | None = None,
    stop: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Train ``comp.policy`` for ``cfg.total_steps`` rollout batches; return the final metrics.

    ``on_step``/``on_eval`` receive each metrics record (the CLI drives its progress bar
    with them); ``on_notice`` receives one-line notices (a damaged checkpoint passed over,
    a torn metrics line dropped). ``stop`` is asked after every step; when it names a reason
    (a signal), the run checkpoints that step, writes ``{"stopped": reason}`` and returns the
    last step's metrics with ``stopped`` set. Raises :class:`TrainingError` after ``cfg.max_bad_steps`` bad
    steps in a row (a non-finite loss or gradient norm; the last checkpoint stays intact). When ``cfg.max_minutes`` runs out
    first, the run evaluates and checkpoints at the step it reached, writes a record
    ``{"stopped": "max_minutes"}`` and returns the last step's metrics with ``stopped`` set.
    """
    # ---- setup -------------------------------------------------------------------------------
    budget = TimeBudget(cfg.max_minutes)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    policy, task = comp.policy, comp.task
    engine = ranks.ranked(comp.engine)  # an engine without the Ranks members runs as one process
    rc = cfg.rollout
    ranks.check_split(engine, rc.prompts_per_step)
    main = engine.is_main
    if not main:  # only the main rank reports: metrics, progress, notices
        on_step = on_eval = on_notice = None
    train_set = list(task.train_items())
    if not train_set:
        raise TrainingError(f"task {task.name!r} has no training items; check its data options")
    test_set = list(task.test_items())[: cfg.eval_size]
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    counters = Counters()
    ref_snapshot: list[torch.Tensor] | None = None
    log = MetricsLog(run_dir / "metrics.jsonl") if main else None
    if main:
        ckpt.write_config(run_dir, cfg.to_dict())
    found = ckpt.resumable_checkpoint(run_dir, on_notice) if resume else None
    if found is not None:
        path, state = found
        if state["ref_snapshot"] is not None:  # rebuild the synced reference, then the current weights
            with engine.full_parameters(policy, writable=True):
                _load_trainable(policy, state["ref_snapshot"])
            engine.sync_reference(policy)
            ref_snapshot = state["ref_snapshot"]
        with engine.full_parameters(policy, writable=True):
            _load_trainable(policy, state["trainable"])
        engine.load_state_dict(state["engine"])
        engine.load_state(path)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        counters = _counters(state["counters"], path)
        if log:
            log.truncate_after(counters.step, on_notice)
    else:  # a fresh start, or a run killed before its first checkpoint: its records are dropped
        if log:
            log.truncate_after(-1, on_notice)
        if cfg.eval_size:
            budget.note_eval(_run_eval(cfg, comp, engine, test_set, 0, log, on_eval))
    needs = step_needs(comp.weighting, comp.objective)

    # ---- loop ----------------------------------------------------------------------------------
    last: dict[str, Any] = {}
    batch: RolloutBatch | None = None
    while counters.step < cfg.total_steps:
        step = counters.step
        times: dict[str, float] = {}
        t_start = tick = time.perf_counter()

        # rollout: G completions per prompt with the current policy
        policy.train(False)
        all_items = batch_items(train_set, step, rc.prompts_per_step, cfg.seed)
        groups = engine.shard(len(all_items))  # this rank's groups, whole
        items = all_items[groups.start:groups.stop]
        keyed = ranks.group_generators(engine, cfg.seed, step, "rollout", groups)
        with engine.full_parameters(policy), stage_precision(cfg.precision.rollout, policy.device):
            samples = sample_group_batch(
                policy, comp.sampler, task, items, group_size=rc.group_size, gen_length=rc.gen_length,
                batch_rows=rc.batch_rows, generator=keyed or gen,
                width=prompt_width(policy, task, all_items) if engine.world_size > 1 else None,
            )  # rows [B*G] (this rank's groups)
        times["rollout"], tick = time.perf_counter() - tick, time.perf_counter()

        # rewards
        outputs = decode_completions(policy.tokenizer, samples.completion_ids, policy.stop_ids)
        scored = score_rewards(task, samples.texts, outputs, samples.items)
        eligible = eligible_positions(
            task, samples.items, samples.completion_ids, samples.prefill, mask_id=policy.mask_id,
            eos_id=policy.eos_id, relevant_only=cfg.scoring.relevant_only, truncate_at_eos=cfg.scoring.truncate_at_eos,
        )  # [B*G, L]
        batch = RolloutBatch(
            prompt_ids=samples.prompt_ids, prompt_mask=samples.prompt_mask, completion_ids=samples.completion_ids,
            eligible=eligible, rewards=rewards_tensor(scored), group_size=rc.group_size, nfe=samples.nfe,
            items=tuple(samples.items),
        )
        counters.reward_failures += scored.n_failed
        times["reward"], tick = time.perf_counter() - tick, time.perf_counter()

        # log-likelihoods of current (= rollout) and reference policy: exact, or ELBO with shared masks.
        # Right after a reference sync the two are the same model, so log_rnd is exactly 0 and
        # the estimate is skipped unless log p_old itself is needed.
        ref_is_rollout = counters.last_sync_step == step
        skip_logp = ref_is_rollout and LOG_P_OLD not in needs
        if needs & {LOG_RND, LOG_P_OLD} and not skip_logp:
            with stage_precision(cfg.precision.logp, policy.device):
                if use_exact_logp(cfg.scoring.method, samples):
                    log_old, log_ref = exact_log_likelihoods(policy, samples, eligible, chunk_rows=rc.batch_rows)
                else:
                    log_old, log_ref = estimate_log_likelihoods(
                        policy, batch, replicates=cfg.scoring.replicates, antithetic=cfg.scoring.antithetic,
                        generator=ranks.group_generators(engine, cfg.seed, step, "logp", groups) or gen,
                        chunk_rows=rc.batch_rows,
                    )  # [B*G], [B*G]
            batch = attrs.evolve(batch, log_p_old=log_old, log_p_ref=log_ref)
        if TRAJECTORY in needs:  # the sampler's record (decoding order, token log-probs, its own records)
            if samples.token_logp is None or samples.commit_step is None:
                raise TrainingError("the objective needs the sampler's trajectory; use a sampler whose "
                                    "returns_logp is true (e.g. diffpo-eb, roar)")
            batch = attrs.evolve(batch, extras=samples.trajectory())
        with torch.no_grad(), stage_precision(cfg.precision.logp, policy.device):  # the objective's own
            # rollout-time data (old/reference per-token log-probs ...)
            extras = prepare_extras(comp.objective, policy, batch, cfg.loss.num_iterations,
                                    ranks.group_generators(engine, cfg.seed, step, "prepare", groups) or gen)
        if extras:
            batch = attrs.evolve(batch, extras={**batch.extras, **extras})
        times["logp"], tick = time.perf_counter() - tick, time.perf_counter()

        # weights, held fixed while the batch is reused
        log_rnd = batch.log_rnd  # [B*G] or None
        if ref_is_rollout:
            log_rnd = torch.zeros_like(batch.rewards)  # [B*G]: reference == rollout policy
        # A scheme that reads the current policy's likelihood (unbiased baseline) gets log p_old here:
        # at rollout time the current policy IS p_old; the objective recomputes it at loss time.
        # Several ranks weigh the whole step's batch (gathered) and keep their own rows.
        current = batch.log_p_old if CURRENT_LOGP in comp.weighting.needs else None  # [B*G] or None
        weights, all_weights, whole = ranks.weigh_whole_batch(engine, comp.weighting, batch, log_rnd, current, groups)
        times["weights"], tick = time.perf_counter() - tick, time.perf_counter()

        # update: num_iterations gradient steps on this batch
        policy.train(True)
        loss_stats, grad_norms, t_loss, t_opt, finite = [], [], 0.0, 0.0, True
        # keyed randomness: one group per chunk, each with its own generator
        chunk = 1 if engine.rng_mode == "keyed" else (cfg.loss.micro_batch_groups or batch.num_groups)
        for iteration in range(cfg.loss.num_iterations):
            loss_gens = ranks.group_generators(engine, cfg.seed, step, "loss", groups, iteration)
            for start in range(0, batch.num_groups, chunk):
                sub, subw = slice_groups(batch, weights, start, min(start + chunk, batch.num_groups))
                t0 = time.perf_counter()
                with stage_precision(cfg.precision.loss, policy.device):  # forward only; backward follows its dtypes
                    loss, lstats = comp.objective(
                        policy, sub, subw, num_groups=len(all_items), iteration=iteration, weighting=comp.weighting,
                        generator=gen if loss_gens is None else loss_gens[start],
                    )
                finite = ranks.agree(engine, finite and bool(torch.isfinite(loss.detach())))
                if not finite:
                    break
                # the loss is over the whole step's groups; an engine averages gradients over its ranks
                engine.backward(loss * engine.world_size if engine.world_size > 1 else loss)
                t_loss += time.perf_counter() - t0
                loss_stats.append(lstats)
            t0 = time.perf_counter()
            if not finite:
                engine.zero_grad()
                break
            norm = engine.step()  # a non-finite norm: the engine dropped the gradients, no update
            grad_norms.append(norm)
            t_opt += time.perf_counter() - t0
            if not math.isfinite(norm):
                finite = False
                break
        times["loss_fwd_bwd"], times["optimizer"] = t_loss, t_opt
        counters.step += 1
        if finite:
            counters.bad_in_row = 0
        else:
            counters.bad_in_row += 1
            counters.skipped_steps += 1
            if counters.bad_in_row >= cfg.max_bad_steps:
                raise TrainingError(
                    f"{counters.bad_in_row} bad steps in a row (non-finite loss or gradient norm) at step "
                    f"{step + 1}; stopped. "
                    f"The last checkpoint in {run_dir / ckpt.CHECKPOINTS} is intact: lower optim.lr or "
                    f"check the rewards, then resume with --resume"
                )

        # reference sync
        if cfg.ref_sync_every and counters.step % cfg.ref_sync_every == 0:
            engine.sync_reference(policy)
            with engine.full_parameters(policy):
                ref_snapshot = _trainable_snapshot(policy)
            counters.last_sync_step = counters.step

        # log
        times["total"] = time.perf_counter() - t_start
        times["other"] = times["total"] - sum(v for k, v in times.items() if k != "total")
        last = _step_record(counters, batch, log_rnd, scored, all_weights, loss_stats, grad_norms, times, engine,
                            finite, whole)
        if log:
            log.write(last)
        if on_step:
            on_step(last)

        # evaluate and checkpoint (a spent time budget makes this step the last; the main rank's clock decides)
        budget.note_step(times["total"])
        out_of_time = ranks.main_decides(engine, counters.step < cfg.total_steps and budget.exhausted())
        is_last = counters.step == cfg.total_steps or out_of_time
        if cfg.eval_size and ((cfg.eval_every and counters.step % cfg.eval_every == 0) or is_last):
            budget.note_eval(_run_eval(cfg, comp, engine, test_set, counters.step, log, on_eval))
        if (cfg.save_every and counters.step % cfg.save_every == 0) or is_last:
            t0 = time.perf_counter()
            _save(run_dir, cfg, policy, engine, gen, counters, ref_snapshot, batch, on_notice)
            budget.note_save(time.perf_counter() - t0)
        if out_of_time:
            if log:
                log.write({"step": counters.step, "stopped": "max_minutes", "total_steps": cfg.total_steps,
                           "max_minutes": cfg.max_minutes})
            return {**last, "stopped": "max_minutes"}
        asked = stop() if stop is not None else None
        if engine.world_size > 1:  # a signal seen by any rank stops them all at the same step
            asked = next((a for a in engine.gather_objects(asked) if a), None)
        if asked and not is_last:  # a signal: this step is done, save it and go
            if not (cfg.save_every and counters.step % cfg.save_every == 0):
                _save(run_dir, cfg, policy, engine, gen, counters, ref_snapshot, batch, on_notice)
            if log:
                log.write({"step": counters.step, "stopped": asked, "total_steps": cfg.total_steps})
            return {**last, "stopped": asked}
    return last


def prompt_width(policy: Policy, task: Task, items: Sequence[Mapping[str, Any]]) -> int:
    """Tokens of the longest prompt of ``items`` (a step's whole batch: every rank pads to it)."""
    tok = policy.tokenizer
    return max(len(tok(task.prompt(item, tok), add_special_tokens=False)["input_ids"]) for item in items)


def prepare_extras(objective: Objective, policy: Policy, batch: RolloutBatch, num_iterations: int,
                   generator: torch.Generator | Sequence[torch.Generator]) -> Mapping[str, torch.Tensor]:
    """The objective's rollout-time extras: for the whole batch with one generator, or group by
    group with one generator each (keyed randomness), joined along the rows."""
    if isinstance(generator, torch.Generator):
        return objective.prepare(policy, batch, num_iterations=num_iterations, generator=generator)
    g = batch.group_size
    parts = [objective.prepare(policy, batch.rows(slice(i * g, (i + 1) * g)), num_iterations=num_iterations,
                               generator=gen) for i, gen in enumerate(generator)]
    return {k: torch.cat([p[k] for p in parts], dim=0) for k in parts[0]} if parts and parts[0] else {}


def _evaluate_ranks(cfg: TrainConfig, comp: Components, engine: Any, items: list, seed: int) -> dict[str, float]:
    """Each rank completes its share of ``items`` with whole parameters; the metric runs over all."""
    mine = engine.shard(len(items))
    with engine.full_parameters(comp.policy), stage_precision(cfg.precision.evaluation, comp.policy.device):
        metrics, records = evaluate(
            comp.policy, comp.task, comp.eval_sampler, items[mine.start:mine.stop], batch_size=cfg.eval_batch_size,
            gen_length=cfg.rollout.gen_length, generator=torch.Generator().manual_seed(seed),
        )
    if engine.world_size == 1:
        return metrics
    parts = engine.gather_objects(([r["completion"] for r in records], metrics.get("mean_nfe", 0.0) * len(records),
                                   metrics["seconds"]))
    outputs = [c for part in parts for c in part[0]]
    merged = dict(comp.task.metric(outputs, list(items))) if items else {}
    merged["mean_nfe"] = sum(part[1] for part in parts) / max(len(items), 1)
    merged["seconds"] = max(part[2] for part in parts)
    return merged


def _run_eval(cfg: TrainConfig, comp: Components, engine: Any, items: list, step: int, log: MetricsLog | None,
              cb: StepCallback | None) -> float:
    """Evaluate on the held-out ``items`` (shared out over the ranks), log the record on the main
    rank; return the seconds it took."""
    seed = cfg.seed + 7919
    metrics = _evaluate_ranks(cfg, comp, engine, items, seed)
    protocol = evaluation_protocol(
        task_name=cfg.task, task=comp.task, sampler_name=cfg.eval_sampler or cfg.rollout.sampler,
        sampler=comp.eval_sampler, gen_length=cfg.rollout.gen_length, items=items, seed=seed,
        batch_size=cfg.eval_batch_size,
    )
    record = {"step": step, "eval": True, **{f"eval_{k}": v for k, v in metrics.items()}, "protocol": protocol}
    if log:
        log.write(record)
    if cb:
        cb(record)
    return float(metrics["seconds"])


def _save(run_dir: Path, cfg: TrainConfig, policy: Policy, engine: Engine, gen: torch.Generator,
          counters: Counters, ref_snapshot: list[torch.Tensor] | None, batch: RolloutBatch | None,
          notice: ckpt.Notice | None = None) -> None:
    """One checkpoint, written by every rank: the main rank makes the staging folder, each rank
    writes the engine's own state there (sharded optimizer state), then the main rank writes the
    whole policy, the trainer state and the checksums and renames it into place."""
    tmp = ckpt.staging_folder(run_dir, counters.step)
    if engine.is_main:
        ckpt.make_staging(tmp)
    engine.barrier()
    engine.save_state(tmp)
    engine.barrier()
    engine_state = engine.state_dict()
    with engine.full_parameters(policy):
        trainable = _trainable_snapshot(policy)
        if engine.is_main:
            state = {
                "step": counters.step,
                "trainable": trainable,
                "ref_snapshot": ref_snapshot,
                "engine": engine_state,
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "counters": attrs.asdict(counters),
            }
            rollout = ckpt.batch_to_dict(batch) if batch is not None else None  # the main rank's groups
            ckpt.save_checkpoint(run_dir, counters.step, policy=policy, trainer_state=state, rollout=rollout,
                                 keep=cfg.keep_checkpoints, layouts=checkpoint_layouts(cfg),
                                 recipe=Recipe.from_config(cfg, step=counters.step).to_dict(), notice=notice,
                                 staged=True)
    engine.barrier()


def _step_record(counters: Counters, batch: RolloutBatch, log_rnd: torch.Tensor | None, scored: Any,
                 weights: WeightOutput, loss_stats: list[Mapping[str, float]], grad_norms: list[float], times: dict[str, float],
                 engine: Engine, finite: bool, whole: ranks.WholeStep | None = None) -> dict[str, Any]:
    """The step's metrics record, over the whole batch (every rank's groups: ``whole`` holds the
    gathered rewards and tilts; collective, so every rank calls it)."""
    rewards, nfe = batch.rewards, batch.nfe  # [B*G]
    if whole is not None:
        rewards, log_rnd = whole.rewards, whole.log_rnd
        per_rank = engine.gather_objects(batch.nfe)
        nfe = sum(per_rank)
    scored = ranks.merged_rewards(engine, scored)
    loss_stats = ranks.merged_stats(engine, loss_stats)
    r = rewards[torch.isfinite(rewards)]  # [valid]
    record: dict[str, Any] = {
        "step": counters.step,
        "reward_mean": float(r.mean()) if r.numel() else math.nan,
        "reward_std": float(r.std()) if r.numel() > 1 else 0.0,
        "reward_failures": scored.n_failed,
        "nfe": nfe,
        "finite": finite,
        "skipped_steps": counters.skipped_steps,
        "grad_norm": float(sum(grad_norms) / len(grad_norms)) if grad_norms else math.nan,
        "lr": float(engine.lr),
    }
    record.update({f"reward/{k}": v for k, v in scored.component_means().items()})
    record.update(weights.stats)
    if loss_stats:
        for key in loss_stats[0]:
            record[key] = float(sum(s[key] for s in loss_stats) / len(loss_stats))
    if log_rnd is not None:
        record["log_rnd_mean"] = float(log_rnd.mean())
    record.update({f"time/{k}": v for k, v in times.items()})
    if whole is not None:
        record["nfe_per_rank"] = per_rank
        record["world_size"] = engine.world_size
    return record
