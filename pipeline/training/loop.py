"""The training loop for one process: warm-up + cosine schedule, validation several times per
epoch with early stopping on the tasks' normalized validation loss, a checkpoint per epoch and
resume from it, deterministic under a seed.

A checkpoint holds tensors and plain values only (model, optimizers, loss weighting, torch RNG
state, epoch, step, best weights, history, the run's fingerprint), so it loads with
``weights_only=True``. Batch order depends on (seed, epoch) alone, so a resumed run repeats an
uninterrupted one. A checkpoint is resumed only when its fingerprint (the caller's hash of what
decides the result: model, conf, training rows) matches; one of another run is ignored.

A run fails (``RunFailure``) rather than produce a model nobody should use or run unattended for
ever: a training loss that is NaN or infinite stops it (checked every ``CHECK_STEPS`` steps and at
every validation, so the loop never waits on a loss value at every step), and so does the wall
clock passing ``training.time_limit_minutes``. A validation score that is not finite is never kept as
the best.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

import torch
from torch import nn

from pipeline import console
from pipeline.config import TrainingConf
from pipeline.errors import RunFailure
from pipeline.models import LossWeighting, RankingModel
from pipeline.training.ranks import SingleProcess, time_limit_failure

CHECKPOINT = "checkpoint.pt"
# Steps between reads of the running loss sums (the check that they are finite): reading a value
# waits for every step queued before it, so the loop reads them now and then, not every step.
CHECK_STEPS = 16
log = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]


@dataclass
class TrainResult:
    best_epoch: float     # when the kept weights were validated, in epochs (1.5: half-way through epoch 2)
    epochs_run: int       # epochs started (the last may have stopped early)
    history: list[dict] = field(default_factory=list)  # one dict per validation
    samples_per_second: float = 0.0


def lr_factor(step: int, total_steps: int, conf: TrainingConf) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0 (or constant)."""
    warmup = int(conf.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if conf.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def validation_points(steps: int, per_epoch: int) -> set[int]:
    """Steps within an epoch (1-based, all < ``steps``) after which to validate besides its end:
    ``per_epoch - 1`` of them, evenly spaced."""
    return {round(k * steps / per_epoch) for k in range(1, per_epoch)} - {0, steps}


def make_optimizers(model: RankingModel, weighting: LossWeighting, conf: TrainingConf,
                    size: int) -> dict[str, torch.optim.Optimizer]:
    """AdamW for the dense layers (and a learned loss weighting); for the embedding tables
    row-wise Adagrad, whose update of a row the batch did not touch is exactly zero (Adam's
    momentum and AdamW's decay would keep moving it). Learning rates scale with the ranks.
    Each parameter group says whether it belongs to the wide part (``"wide"``)."""
    wide = {id(p) for p in (model.wide.parameters() if model.wide is not None else [])}
    embeddings = {id(p) for p in model.embedding_parameters()}
    dense = [p for p in model.parameters() if id(p) not in embeddings] + list(weighting.parameters())

    def groups(params, lr, **options):
        parts = [[p for p in params if (id(p) in wide) == is_wide] for is_wide in (False, True)]
        return [{"params": part, "lr": lr * size, "wide": is_wide, **options}
                for part, is_wide in zip(parts, (False, True)) if part]

    # fused: one kernel over all the dense parameters instead of several per parameter.
    optimizers = {"dense": torch.optim.AdamW(groups(dense, conf.learning_rate, weight_decay=conf.weight_decay),
                                             fused=True)}
    if embeddings:
        optimizers["embedding"] = torch.optim.Adagrad(
            groups(model.embedding_parameters(), conf.embedding_learning_rate))
    return optimizers


def fit(model: RankingModel, weighting: LossWeighting, train: Callable[[int], Iterable[Batch]],
        validation: Callable[[], Iterable[Batch]], steps_per_epoch: int, conf: TrainingConf, *,
        min_steps_per_epoch: Optional[int] = None, checkpoint_dir: Optional[str] = None,
        stop_after_epoch: Optional[int] = None, progress: bool = True,
        ranks: SingleProcess = SingleProcess(), fingerprint: str = "",
        time_limit_s: Optional[float] = None) -> TrainResult:
    """Trains ``model`` in place and leaves it with the weights of its best validation.

    The deep part (every parameter outside ``model.wide``) trains for ``training.deep_epochs``
    epochs; later epochs train the wide part alone. Id embeddings and the layers over them
    memorise their rows from the second pass on (the one-epoch phenomenon of deep CTR models,
    Zhang et al., CIKM 2022), while a linear model over the same ids still improves.

    Validates ``training.validations_per_epoch`` times per epoch; the score is the sum over the
    model's estimates of the validation log loss divided by that of the base rate (normalized
    entropy), so every task counts the same whatever its positive rate. Training stops after
    ``training.patience`` validations without improvement.

    With several ranks every rank calls ``fit`` on its own shard: gradients are averaged at every
    step, the learning rates are scaled by the number of ranks, validation sums are summed over the
    ranks (so every rank takes the same decisions) and rank 0 alone writes checkpoints.

    Args:
        model: the network.
        weighting: adds the model's losses up.
        train: ``train(epoch)`` yields this rank's batches of the epoch (order fixed by the epoch).
        validation: yields this rank's validation batches.
        steps_per_epoch: the most batches any rank has in an epoch (for the schedule).
        conf: the ``training`` section.
        min_steps_per_epoch: the fewest batches any rank has (mid-epoch validations happen
            before it, so that every rank takes part); default ``steps_per_epoch``.
        checkpoint_dir: where ``checkpoint.pt`` is written after every epoch and resumed from.
        stop_after_epoch: stop after this epoch as if killed (tests of resume).
        progress: show a progress bar (rank 0).
        ranks: the process group (``SingleProcess``, or a backend's ranks: ``pipeline.training.backends``).
        fingerprint: identifies the run in its checkpoint; a checkpoint with another one is
            ignored (training starts fresh and overwrites it after the first epoch).
        time_limit_s: wall-clock seconds the loop may run; default
            ``training.time_limit_minutes``.

    Raises:
        RunFailure: a training loss is NaN or infinite, or the time limit has passed.
    """
    limit = conf.time_limit_minutes * 60.0 if time_limit_s is None else time_limit_s
    deadline = time.monotonic() + limit
    torch.manual_seed(conf.seed)
    optimizers = {name: ranks.distributed(optimizer, model, weighting)
                  for name, optimizer in make_optimizers(model, weighting, conf, ranks.size).items()}
    base_lrs = {name: [group["lr"] for group in opt.param_groups] for name, opt in optimizers.items()}
    total_steps = steps_per_epoch * conf.epochs
    points = validation_points(min_steps_per_epoch or steps_per_epoch, conf.validations_per_epoch)
    state = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": 0.0, "stale": 0, "history": [],
             "best_model": copy.deepcopy(model.state_dict())}
    path = os.path.join(checkpoint_dir, CHECKPOINT) if checkpoint_dir else None
    if path and os.path.exists(path):
        state = _restore(path, model, optimizers, weighting, fingerprint, announce=ranks.rank == 0) or state

    # Without a wide part nothing trains once the deep part is done.
    epochs = conf.epochs if model.wide is not None else min(conf.epochs, conf.deep_epochs or conf.epochs)
    samples, seconds = 0, 0.0
    while state["epoch"] < epochs and state["stale"] <= conf.patience:
        epoch = state["epoch"] + 1
        deep_done = conf.deep_epochs is not None and epoch > conf.deep_epochs
        ranks.sync((model, weighting), list(optimizers.values()))
        model.train()
        started, sums = time.perf_counter(), _zeros(weighting)
        bar = console.progress(train(epoch), total=steps_per_epoch, desc=f"epoch {epoch}/{conf.epochs}",
                               unit="batches", enabled=progress and ranks.rank == 0, logger=log)
        bar.figures(lambda: {k: f"{v / means['rows']:.4f}" for means in [_read(sums, weighting)]
                             for k, v in means.items() if k != "rows" and means["rows"]})
        for step_in_epoch, batch in enumerate(bar, start=1):
            losses = _losses(model, model(batch["cat"], batch["num"]), batch,
                             f"training loss is nan ({{}}) at epoch {epoch}, step {step_in_epoch}: "
                             f"lower training.learning_rate or check the inputs")
            total = weighting.total(losses, model.shared_parameters())
            factor = lr_factor(state["step"], total_steps, conf)
            for name, optimizer in optimizers.items():
                optimizer.zero_grad()  # set_to_none by default (Horovod's wrapper takes no argument)
                for group, lr in zip(optimizer.param_groups, base_lrs[name]):
                    group["lr"] = 0.0 if deep_done and not group["wide"] else lr * factor
            total.backward()
            for optimizer in optimizers.values():
                optimizer.step()
            state["step"] += 1
            sums += _row_weighted(losses, weighting.task_names, len(batch["click"]))
            if step_in_epoch % CHECK_STEPS == 0:
                _check_finite(_read(sums, weighting), epoch, step_in_epoch)
            if time.monotonic() > deadline:
                raise time_limit_failure(limit)
            if step_in_epoch in points:
                _check_finite(_read(sums, weighting), epoch, step_in_epoch)
                counted = _validate(model, weighting, validation, _read(sums, weighting),
                                    epoch - 1 + step_in_epoch / steps_per_epoch, time.perf_counter() - started,
                                    state, ranks)
                samples, seconds = samples + counted[0], seconds + counted[1]
                started, sums = time.perf_counter(), _zeros(weighting)
                if state["stale"] > conf.patience:
                    break
        ranks.join()
        _check_finite(_read(sums, weighting), epoch, state["step"] - (epoch - 1) * steps_per_epoch)
        # The schedule counts steps of the longest shard on every rank, so resumes agree.
        state["step"] = epoch * steps_per_epoch
        if state["stale"] <= conf.patience:
            counted = _validate(model, weighting, validation, _read(sums, weighting), float(epoch),
                                time.perf_counter() - started, state, ranks)
            samples, seconds = samples + counted[0], seconds + counted[1]
        if time.monotonic() > deadline:
            raise time_limit_failure(limit)
        state["epoch"] = epoch
        if path and ranks.rank == 0:
            _save(path, {**state, "fingerprint": fingerprint}, model, optimizers, weighting)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    model.load_state_dict(state["best_model"])
    return TrainResult(best_epoch=state["best_epoch"], epochs_run=state["epoch"], history=state["history"],
                       samples_per_second=samples / seconds if seconds else 0.0)


def _validate(model: RankingModel, weighting: LossWeighting, validation: Callable[[], Iterable[Batch]],
              sums: dict[str, float], epoch: float, elapsed: float, state: dict,
              ranks: SingleProcess) -> tuple[float, float]:
    """Validates, appends the history row, keeps the best weights; returns (train rows, seconds)
    since the previous validation."""
    sums = ranks.sum(sums)
    count = sums.pop("rows")
    losses, scores = validation_scores(model, validation(), ranks)
    score = sum(scores.values())
    state["history"].append({
        "epoch": round(epoch, 2), "step": state["step"], "seconds": elapsed,
        "samples_per_second": count / elapsed if elapsed else 0.0,
        "train": {k: v / max(count, 1) for k, v in sums.items()}, "validation": losses,
        "normalized_entropy": scores, "score": score, "weights": dict(weighting.weights())})
    improved = math.isfinite(score) and score < state["best_score"] - 1e-6
    if improved:
        state.update(best_score=score, best_epoch=round(epoch, 2), stale=0,
                     best_model=copy.deepcopy(model.state_dict()))
    else:
        state["stale"] += 1
    if ranks.rank == 0:
        row = state["history"][-1]
        log.info("epoch %.2f: train loss %s; validation loss %s; normalized entropy %s%s", epoch,
                 _figures(row["train"]), _figures(losses), _figures(scores),
                 " (best so far)" if improved else f" (no better for {state['stale']})")
    return count, elapsed


def _figures(values: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.4f}" for name, value in values.items())


def _zeros(weighting: LossWeighting) -> torch.Tensor:
    """Row count and loss sums at zero, [1 + T] (``_read`` names them): the same on every rank,
    even one with no batch."""
    return torch.zeros(1 + len(weighting.task_names), dtype=torch.float64)


def _row_weighted(losses: Mapping[str, torch.Tensor], names: Iterable[str], rows: int) -> torch.Tensor:
    """A batch's row count and row-weighted losses, [1 + T] in ``names`` order, without leaving the
    device (no wait for the step to finish)."""
    values = torch.stack([losses[name].detach() for name in names]).double()  # [T]
    return torch.cat([values.new_ones(1), values]) * rows  # [1 + T]


def _read(sums: torch.Tensor, weighting: LossWeighting) -> dict[str, float]:
    """``sums`` [1 + T] as ``{"rows": ..., task: ...}`` (one read of the device)."""
    return dict(zip(("rows", *weighting.task_names), sums.tolist()))


def _losses(model: RankingModel, logits: Mapping[str, torch.Tensor], batch: Batch,
            failure: str) -> dict[str, torch.Tensor]:
    """``model.losses``, or ``RunFailure(failure)`` naming an output that is not finite when a loss
    refuses it (BCE over a product of probabilities raises on NaN instead of returning NaN)."""
    try:
        return model.losses(logits, batch)
    except RuntimeError:
        bad = next((name for name, value in logits.items() if not torch.isfinite(value).all()), None)
        if bad is None:
            raise
        raise RunFailure(failure.format(f"output {bad} is not finite")) from None


def _check_finite(sums: Mapping[str, float], epoch: int, step: int) -> None:
    """Raises ``RunFailure`` naming the first loss whose running sum is NaN or infinite (it went so
    at ``step`` or in the ``CHECK_STEPS`` steps before)."""
    for name, value in sums.items():
        if not math.isfinite(value):
            raise RunFailure(f"training loss {name} is {value:g} at epoch {epoch}, step {step}: "
                             f"lower training.learning_rate or check the inputs")


# Which labels, on which rows, each estimate is scored against: (label, rows mask or None).
SCORED = {"p_ctr": ("click", None), "p_ctcvr": ("conversion", None), "p_cvr": ("conversion", "click")}


@torch.no_grad()
def validation_scores(model: RankingModel, batches: Iterable[Batch],
                      ranks: SingleProcess = SingleProcess()) -> tuple[dict[str, float], dict[str, float]]:
    """Mean per-task losses and the normalized entropy of each estimate over ``batches`` of every
    rank, in eval mode.

    The normalized entropy of an estimate is its log loss divided by the log loss of predicting
    the base rate (He et al., ADKDD 2014): below 1 the estimate knows more than the base rate.
    Scored: ``p_ctr`` on clicks and ``p_ctcvr`` on conversions over all rows; ``p_cvr`` on
    conversions over clicked rows, only for a model without ``p_ctcvr``.

    Returns:
        (losses by name, normalized entropy by estimate).
    """
    model.eval()
    scored = scored_estimates(model.estimates)
    # The same keys on every rank, even one without a batch; summed on the device, read once.
    keys = ("rows", *model.loss_names, *(f"{e}.{k}" for e in scored for k in ("n", "y", "logloss")))
    totals = torch.zeros(len(keys), dtype=torch.float64)  # [K]
    for batch in batches:
        logits = model(batch["cat"], batch["num"])
        losses = _losses(model, logits, batch, "validation loss is nan ({}): check the validation inputs")
        probabilities = model.probabilities(logits)
        parts = [_row_weighted(losses, model.loss_names, len(batch["click"]))]  # [1 + L]
        for estimate in scored:
            label, mask = SCORED[estimate]
            p = probabilities[estimate].double().clamp(1e-7, 1 - 1e-7)  # [B]
            rows, y = (batch[mask].double() if mask else torch.ones_like(p)), batch[label].double()  # [B], [B]
            logloss = -(y * p.log() + (1 - y) * (1 - p).log())  # [B]
            parts.append(torch.stack([rows.sum(), (rows * y).sum(), (rows * logloss).sum()]))  # [3]
        totals += torch.cat(parts)
    sums = dict(zip(keys, totals.tolist()))
    model.train()
    sums = ranks.sum(sums)
    count = sums.pop("rows")
    losses = {name: sums[name] / max(count, 1) for name in model.loss_names}
    scores = {}
    for estimate in scored:
        n, y, logloss = (sums[f"{estimate}.{key}"] for key in ("n", "y", "logloss"))
        rate = min(max(y / max(n, 1), 1e-7), 1 - 1e-7)
        base = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
        scores[estimate[2:]] = (logloss / max(n, 1)) / base
    return losses, scores


def scored_estimates(estimates: Iterable[str]) -> tuple[str, ...]:
    """The estimates the early-stopping score uses: p_ctr, p_ctcvr, and p_cvr only without p_ctcvr."""
    has = set(estimates)
    return tuple(e for e in ("p_ctr", "p_ctcvr", "p_cvr") if e in has and not (e == "p_cvr" and "p_ctcvr" in has))


def _save(path: str, state: dict, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
          weighting: nn.Module) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {**state, "model": model.state_dict(),
               "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
               "weighting": weighting.state_dict(), "torch_rng": torch.get_rng_state()}
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint whole


def _restore(path: str, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
             weighting: nn.Module, fingerprint: str, *, announce: bool) -> Optional[dict]:
    """Loads the checkpoint into the model, optimizers and weighting and returns the loop state;
    ``None`` (nothing loaded) when it belongs to another run."""
    payload = torch.load(path, weights_only=True)
    if payload.pop("fingerprint", None) != fingerprint:
        if announce:
            log.warning("ignoring checkpoint of another run (conf or training set changed): %s", path)
        return None
    model.load_state_dict(payload.pop("model"))
    for name, state in payload.pop("optimizers").items():
        optimizers[name].load_state_dict(state)
    weighting.load_state_dict(payload.pop("weighting"))
    torch.set_rng_state(payload.pop("torch_rng"))
    return payload
