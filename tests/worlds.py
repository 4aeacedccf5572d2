"""The tiny generated world most end-to-end tests run on, written once: 2,000 exposures a day,
a click window that makes a day final two days later, and a small network that trains an epoch
in seconds. A test module adds its own days and settings."""
from __future__ import annotations

TINY_WORLD = ["synth.exposures_per_day=2000", "synth.num_users=100", "synth.num_items=60", "synth.num_brands=40",
              "synth.ctr=0.2", "synth.cvr=0.1", "labels.attribution_window_days=1", "labels.max_delay_days=2"]
TINY_MODEL = ["model.bottom_hidden=[32]", "model.tower_hidden=[16]", "model.embedding_dim=8",
              "training.batch_size=512", "training.num_proc=1"]


def tiny_world(days: int, *more: str) -> list[str]:
    """``--set`` items of the tiny world over ``days`` days with the tiny model trained one epoch
    and no test days, then ``more`` (later items win)."""
    return [f"synth.days={days}", *TINY_WORLD, *TINY_MODEL, "training.epochs=1", "training.test_days=0", *more]
