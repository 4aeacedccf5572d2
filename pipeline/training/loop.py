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
        progress: bool = True) -> TrainResult:
    """Trains ``model`` in place and leaves it with the weights of its best validation epoch.

    Args:
        model: the network; ``model(cat, num)`` returns a dict of logits.
        objective: per-task losses and their weighting.
        train: ``train(epoch)`` yields the epoch's batches (its order fixed by the epoch number).
        validation: yields the validation batches.
        steps_per_epoch: batches per epoch (for the schedule).
        conf: the ``training`` section.
        checkpoint_dir: where ``checkpoint.pt`` is written after every epoch and resumed from.
        stop_after_epoch: stop after this epoch as if killed (tests of resume).
        progress: show a progress bar.
    """
    torch.manual_seed(conf.seed)
    params = list(model.parameters()) + list(objective.weighting.parameters())
    optimizer = torch.optim.AdamW(params, lr=conf.learning_rate, weight_decay=conf.weight_decay)
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
        model.train()
        started, sums, count = time.perf_counter(), {}, 0
        bar = tqdm(train(epoch), total=steps_per_epoch, desc=f"epoch {epoch}/{conf.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for batch in bar:
            losses = objective.losses(model(batch["cat"], batch["num"]), batch)
            total = objective.weighting.total(losses, model.shared_parameters())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            size = len(batch["click"])
            count += size
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
            bar.set_postfix({k: f"{v / count:.4f}" for k, v in sums.items()}, refresh=False)
        elapsed = time.perf_counter() - started
        samples, seconds = samples + count, seconds + elapsed
        valid = evaluate_losses(model, objective, validation())
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
        if path:
            _save(path, state, model, optimizer, scheduler, objective.weighting)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    model.load_state_dict(state["best_model"])
    return TrainResult(best_epoch=state["best_epoch"], epochs_run=state["epoch"], history=state["history"],
                       samples_per_second=samples / seconds if seconds else 0.0)


@torch.no_grad()
def evaluate_losses(model: nn.Module, objective: Objective, batches: Iterable[Batch]) -> dict[str, float]:
    """Mean per-task losses over ``batches`` (weighted by batch size), in eval mode."""
    model.eval()
    sums, count = {}, 0
    for batch in batches:
        losses = objective.losses(model(batch["cat"], batch["num"]), batch)
        size = len(batch["click"])
        count += size
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + float(value) * size
    model.train()
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
