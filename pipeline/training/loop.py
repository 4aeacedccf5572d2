"""The training loop for one process: AdamW, warm-up + cosine schedule, early stopping on the
validation days, a checkpoint per epoch and resume from it, deterministic under a seed.

A checkpoint holds tensors and plain values only (model, optimizer, scheduler, loss weighting,
torch RNG state, epoch, step, best weights, history), so it loads with ``weights_only=True``.
Batch order depends on (seed, epoch) alone, so a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import TrainingConf
from pipeline.training.distributed import SingleProcess

CHECKPOINT = "checkpoint.pt"
Batch = dict[str, torch.Tensor]


@dataclass
class Objective:
    """How a model is trained: its per-task losses and how they are weighted."""

    losses: Callable[[dict[str, torch.Tensor], Batch], dict[str, torch.Tensor]]
    weighting: nn.Module  # exposes total(losses, shared_params) and weights()


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)  # one dict per epoch
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


def fit(model: nn.Module, objective: Objective, train: Callable[[int], Iterable[Batch]],
        validation: Callable[[], Iterable[Batch]], steps_per_epoch: int, conf: TrainingConf, *,
        checkpoint_dir: Optional[str] = None, stop_after_epoch: Optional[int] = None,
        progress: bool = True, ranks: SingleProcess = SingleProcess()) -> TrainResult:
    """Trains ``model`` in place and leaves it with the weights of its best validation epoch.

    With several ranks every rank calls ``fit`` on its own shard: gradients are averaged at every
    step, the learning rate is scaled by the number of ranks, losses are summed over the ranks
    (so every rank takes the same early-stopping decision) and rank 0 alone writes checkpoints.

    Args:
        model: the network; ``model(cat, num)`` returns a dict of logits.
        objective: per-task losses and their weighting.
        train: ``train(epoch)`` yields this rank's batches of the epoch (order fixed by the epoch).
        validation: yields this rank's validation batches.
        steps_per_epoch: the most batches any rank has in an epoch (for the schedule).
        conf: the ``training`` section.
        checkpoint_dir: where ``checkpoint.pt`` is written after every epoch and resumed from.
        stop_after_epoch: stop after this epoch as if killed (tests of resume).
        progress: show a progress bar (rank 0).
        ranks: the process group (``SingleProcess`` or ``HorovodRanks``).
    """
    torch.manual_seed(conf.seed)
    params = list(model.parameters()) + list(objective.weighting.parameters())
    optimizer = torch.optim.AdamW(params, lr=conf.learning_rate * ranks.size, weight_decay=conf.weight_decay)
    optimizer = ranks.distributed(optimizer, model, objective.weighting)
    total_steps = steps_per_epoch * conf.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, conf))
    state = {"epoch": 0, "step": 0, "best_loss": math.inf, "best_epoch": 0, "stale": 0, "history": [],
             "best_model": copy.deepcopy(model.state_dict())}
    path = os.path.join(checkpoint_dir, CHECKPOINT) if checkpoint_dir else None
    if path and os.path.exists(path):
        state = _restore(path, model, optimizer, scheduler, objective.weighting)

    samples, seconds = 0, 0.0
    while state["epoch"] < conf.epochs and state["stale"] <= conf.patience:
        epoch = state["epoch"] + 1
        ranks.sync(optimizer, model, objective.weighting)
        model.train()
        started, sums = time.perf_counter(), _zeros(objective)
        bar = tqdm(train(epoch), total=steps_per_epoch, desc=f"epoch {epoch}/{conf.epochs}",
                   unit="batch", disable=not progress or ranks.rank != 0, leave=False)
        for batch in bar:
            losses = objective.losses(model(batch["cat"], batch["num"]), batch)
            total = objective.weighting.total(losses, model.shared_parameters())
            optimizer.zero_grad()  # set_to_none by default (the Horovod wrapper takes no argument)
            total.backward()
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            _accumulate(sums, losses, len(batch["click"]))
            bar.set_postfix({k: f"{v / sums['rows']:.4f}" for k, v in sums.items() if k != "rows"}, refresh=False)
        ranks.join()
        # The schedule counts steps of the longest shard on every rank, so resumes agree.
        state["step"] = epoch * steps_per_epoch
        scheduler.last_epoch = state["step"]
        elapsed = time.perf_counter() - started
        sums = ranks.sum(sums)
        count = sums.pop("rows")
        samples, seconds = samples + count, seconds + elapsed
        valid = evaluate_losses(model, objective, validation(), ranks)
        row = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "seconds": elapsed,
               "samples_per_second": count / elapsed if elapsed else 0.0,
               "train": {k: v / max(count, 1) for k, v in sums.items()}, "validation": valid,
               "weights": dict(objective.weighting.weights())}
        state["history"].append(row)
        valid_loss = sum(valid.values())
        if valid_loss < state["best_loss"] - 1e-6:
            state.update(best_loss=valid_loss, best_epoch=epoch, stale=0,
                         best_model=copy.deepcopy(model.state_dict()))
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        if path and ranks.rank == 0:
            _save(path, state, model, optimizer, scheduler, objective.weighting)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    model.load_state_dict(state["best_model"])
    return TrainResult(best_epoch=state["best_epoch"], epochs_run=state["epoch"], history=state["history"],
                       samples_per_second=samples / seconds if seconds else 0.0)


def _zeros(objective: Objective) -> dict[str, float]:
    """Row count and loss sums at zero: the same keys on every rank, even one with no batch."""
    return dict.fromkeys(("rows", *objective.weighting.task_names), 0.0)


def _accumulate(sums: dict[str, float], losses: dict[str, torch.Tensor], rows: int) -> None:
    """Adds a batch's row-weighted losses and its row count to ``sums``."""
    sums["rows"] = sums.get("rows", 0.0) + rows
    for name, value in losses.items():
        sums[name] = sums.get(name, 0.0) + float(value.detach()) * rows


@torch.no_grad()
def evaluate_losses(model: nn.Module, objective: Objective, batches: Iterable[Batch],
                    ranks: SingleProcess = SingleProcess()) -> dict[str, float]:
    """Mean per-task losses over ``batches`` of every rank (weighted by rows), in eval mode."""
    model.eval()
    sums = _zeros(objective)
    for batch in batches:
        _accumulate(sums, objective.losses(model(batch["cat"], batch["num"]), batch), len(batch["click"]))
    model.train()
    sums = ranks.sum(sums)
    count = sums.pop("rows")
    return {name: value / max(count, 1) for name, value in sums.items()}


def _save(path: str, state: dict, model: nn.Module, optimizer, scheduler, weighting: nn.Module) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "weighting": weighting.state_dict(),
               "torch_rng": torch.get_rng_state()}
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint whole


def _restore(path: str, model: nn.Module, optimizer, scheduler, weighting: nn.Module) -> dict:
    payload = torch.load(path, weights_only=True)
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    scheduler.load_state_dict(payload.pop("scheduler"))
    weighting.load_state_dict(payload.pop("weighting"))
    torch.set_rng_state(payload.pop("torch_rng"))
    return payload
