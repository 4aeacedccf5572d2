"""The worlds of the model-quality suite: generated logs unlike each other in the ways real logs
differ (density, long tails, the direction of the selection bias, cold ids, size).

A default is judged on all of them: a change that helps one world and hurts another is not an
improvement. Each world trains on ``train_days`` days, validates on the next and tests on the
one after (the last generated day).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# Settings shared by every world: the clean-event simulation needs no dirt or late events.
_COMMON = {"late_click_rate": 0.0, "late_conversion_rate": 0.0}


@dataclass(frozen=True)
class World:
    """A generated world: ``synth`` settings (over the defaults) and the days it trains on."""

    name: str
    description: str
    synth: Mapping[str, object]
    train_days: int

    @property
    def days(self) -> int:
        """Generated days: training, one validation day, one test day."""
        return self.train_days + 2


SPARSE = {"num_users": 20_000, "num_items": 5_000, "exposures_per_day": 100_000, "ctr": 0.034, "cvr": 0.05,
          "item_popularity_exponent": 1.0, "user_activity_sigma": 1.2, "affinity_scale": 0.5}

WORLDS: dict[str, World] = {w.name: w for w in (
    World("demo", "the demo world: 1,000 users x 300 items, 50 exposures per user a day, CTR 10 %",
          {}, train_days=4),
    World("sparse", "20,000 users x 5,000 items, long tails, 5 exposures per user a day, CTR 3.4 %, "
                    "click-bait: clicked exposures convert less",
          {**SPARSE, "shared_interest": -0.7, "selection_bias": 0.7}, train_days=2),
    World("bias_up", "sparse, and users buy what they click: clicked exposures convert more",
          {**SPARSE, "shared_interest": 0.9, "selection_bias": 0.0}, train_days=2),
    World("cold", "sparse, with 30 % of users and items new on the test day",
          {**SPARSE, "shared_interest": 0.5, "selection_bias": 1.0, "cold_share": 0.3}, train_days=2),
    World("large", "50,000 users x 10,000 items, 250,000 exposures a day: 1.25M training rows",
          {**SPARSE, "num_users": 50_000, "num_items": 10_000, "exposures_per_day": 250_000,
           "affinity_scale": 1.0, "shared_interest": 0.5, "selection_bias": 1.0}, train_days=5),
)}


def synth_overrides(world: World, seed: int) -> list[str]:
    """``--set`` overrides that make the conf generate ``world`` with ``seed``."""
    settings = {**_COMMON, **world.synth, "days": world.days, "seed": seed}
    return [f"synth.{key}={value}" for key, value in settings.items()]
