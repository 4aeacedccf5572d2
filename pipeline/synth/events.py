"""Clean events of one day: requests, exposures, clicks, conversions, and their truth.

Shape notation: R requests, N exposures, M clicks, Q conversions.

Times are integer epoch milliseconds in whole seconds, so every timestamp format the writer uses
(ISO-8601 with ``Z`` or an offset, epoch milliseconds) denotes exactly the same instant and the
labels in the truth table are exactly those the raw-log contract implies.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import LabelsConf, SynthConf
from pipeline.synth.world import (
    AGES, DEVICE_SHARE, DEVICES, GENDERS, World, ctr_logit, cvr_logit, present_weights, sigmoid)

DAY_MS = 86_400_000
SECOND_MS = 1_000
# Internal columns (dropped by the writer): event time in ms, the parent event's time.
TS_MS, PARENT_TS_MS = "_ts_ms", "_parent_ts_ms"


@dataclass(frozen=True)
class DayEvents:
    exposures: pd.DataFrame    # [N] raw exposure fields + TS_MS
    clicks: pd.DataFrame       # [M] click_id, impression_id + TS_MS, PARENT_TS_MS
    conversions: pd.DataFrame  # [Q] conversion_id, click_id, value + TS_MS, PARENT_TS_MS
    truth: pd.DataFrame        # [N] per impression: true probabilities and clean labels


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Vectorized ``f"{prefix}{n:0{width}d}"`` for non-negative integers, as an object array."""
    numbers = np.asarray(numbers, dtype=np.int64)
    digits = (numbers[:, None] // 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)) % 10
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chars = np.hstack([np.broadcast_to(head, (len(numbers), len(head))), (digits + 48).astype(np.uint8)])
    return np.ascontiguousarray(chars).view(f"S{chars.shape[1]}").ravel().astype(str).astype(object)


def simulate_day(world: World, conf: SynthConf, labels: LabelsConf, day: dt.date, day_index: int,
                 rng: np.random.Generator) -> DayEvents:
    """Simulates the exposures of ``day`` and every click and conversion they lead to.

    Clicks and conversions keep their own timestamps, which may fall on later days (crossing
    midnight, or after their window). Ids are unique across days through ``day_index``.
    """
    n, slots = conf.exposures_per_day, conf.slots_per_request
    num_requests = -(-n // slots)
    day_start_ms = (day - dt.date(1970, 1, 1)).days * DAY_MS

    # Requests [R]: a user on a device at a time of day.
    request_ts = day_start_ms + np.sort(rng.integers(0, DAY_MS // SECOND_MS, num_requests)) * SECOND_MS
    request_user = rng.choice(len(world.user_weight), num_requests,
                              p=present_weights(world.user_weight, world.user_arrival, day_index))
    request_device = rng.choice(len(DEVICES), num_requests, p=DEVICE_SHARE)

    # Exposures [N]: each request shows `slots` items at positions 1..slots.
    request_of = np.arange(n) // slots
    positions = np.arange(n) % slots
    users, devices = request_user[request_of], request_device[request_of]
    items = rng.choice(len(world.item_weight), n, p=present_weights(world.item_weight, world.item_arrival, day_index))
    exposure_ts = request_ts[request_of]
    impression_no = day_index * n + np.arange(n)
    p_ctr = sigmoid(ctr_logit(world, users, items, positions, devices))
    p_cvr = sigmoid(cvr_logit(world, users, items))
    clicked = rng.random(n) < p_ctr
    would_convert = rng.random(n) < p_cvr

    # Clicks [M]: one per clicked exposure; a share arrives after the click window.
    click_of = np.flatnonzero(clicked)
    click_window_ms = labels.click_window_hours * 3_600 * SECOND_MS
    click_delay = _delays(rng, len(click_of), conf.click_delay_minutes * 60, click_window_ms,
                          conf.late_click_rate, late_extra_s=86_400)
    click_ts = exposure_ts[click_of] + click_delay
    click_on_time = click_delay <= click_window_ms

    # Conversions [Q]: converting clicks order once or twice; a share arrives after attribution.
    converting = click_of[would_convert[click_of]]
    converting_click = np.searchsorted(click_of, converting)  # index into the clicks
    repeats = 1 + (rng.random(len(converting)) < conf.repeat_conversion_rate)
    conv_click = np.repeat(converting_click, repeats)
    conv_k = np.arange(len(conv_click)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    attribution_ms = labels.attribution_window_days * DAY_MS
    conv_delay = _delays(rng, len(conv_click), conf.conversion_delay_hours * 3_600, attribution_ms,
                         conf.late_conversion_rate, late_extra_s=2 * 86_400)
    conv_ts = click_ts[conv_click] + conv_delay
    conv_price = world.item_price[items[click_of[conv_click]]]
    conv_value = np.round(conv_price * (1 + rng.poisson(0.3, len(conv_click)))
                          * rng.lognormal(0.0, 0.2, len(conv_click)), 2)
    attributed = click_on_time[conv_click] & (conv_delay <= attribution_ms)

    return DayEvents(
        exposures=_exposure_frame(world, impression_no, day_index * num_requests + request_of,
                                  exposure_ts, users, items, positions, devices),
        clicks=pd.DataFrame({
            "click_id": format_ids("clk-", impression_no[click_of], 10),
            "impression_id": format_ids("imp-", impression_no[click_of], 10),
            TS_MS: click_ts,
            PARENT_TS_MS: exposure_ts[click_of],
        }),
        conversions=pd.DataFrame({
            "conversion_id": format_ids("cnv-", impression_no[click_of[conv_click]] * 10 + conv_k, 11),
            "click_id": format_ids("clk-", impression_no[click_of[conv_click]], 10),
            "value": conv_value,
            TS_MS: conv_ts,
            PARENT_TS_MS: click_ts[conv_click],
        }),
        truth=_truth_frame(n, impression_no, exposure_ts, p_ctr, p_cvr, clicked, would_convert,
                           click_of, click_on_time, click_of[conv_click], attributed, conv_value),
    )


def _delays(rng: np.random.Generator, size: int, mean_s: float, window_ms: int, late_rate: float,
            late_extra_s: int) -> np.ndarray:
    """Delays in ms, whole seconds >= 1 s: exponential within the window, or past it when late."""
    in_window_s = np.clip(np.round(rng.exponential(mean_s, size)), 1, max(window_ms // SECOND_MS, 1))
    late_s = window_ms // SECOND_MS + rng.integers(60, late_extra_s, size)
    is_late = rng.random(size) < late_rate
    return np.where(is_late, late_s, in_window_s).astype(np.int64) * SECOND_MS


def _exposure_frame(world: World, impression_no: np.ndarray, request_no: np.ndarray,
                    exposure_ts: np.ndarray, users: np.ndarray, items: np.ndarray,
                    positions: np.ndarray, devices: np.ndarray) -> pd.DataFrame:
    age = world.user_age[users]
    return pd.DataFrame({
        "impression_id": format_ids("imp-", impression_no, 10),
        "request_id": format_ids("req-", request_no, 10),
        "user_id": format_ids("u", users, 6),
        "item_id": format_ids("i", items, 6),
        "position": positions + 1,
        "category": format_ids("c", world.item_category[items], 2),
        "brand": format_ids("b", world.item_brand[items], 3),
        "price": world.item_price[items],
        "device": DEVICES[devices],
        "user_age": np.where(age >= 0, AGES[np.maximum(age, 0)], None),
        "user_gender": GENDERS[world.user_gender[users]],
        "user_activity": world.user_activity[users],
        TS_MS: exposure_ts,
    })


def _truth_frame(n: int, impression_no: np.ndarray, exposure_ts: np.ndarray, p_ctr: np.ndarray,
                 p_cvr: np.ndarray, clicked: np.ndarray, would_convert: np.ndarray,
                 click_of: np.ndarray, click_on_time: np.ndarray, conv_exposure: np.ndarray,
                 attributed: np.ndarray, conv_value: np.ndarray) -> pd.DataFrame:
    """Per impression: truth, and the labels the contract implies from the clean events."""
    click = np.zeros(n, np.int8)
    click[click_of[click_on_time]] = 1
    value = np.bincount(conv_exposure[attributed], weights=conv_value[attributed], minlength=n)
    conversion = np.zeros(n, np.int8)
    conversion[conv_exposure[attributed]] = 1
    return pd.DataFrame({
        "impression_id": format_ids("imp-", impression_no, 10),
        "exposure_ts": pd.to_datetime(exposure_ts, unit="ms", utc=True),
        "p_ctr": p_ctr,
        "p_cvr": p_cvr,
        "p_ctcvr": p_ctr * p_cvr,
        "clicked": clicked.astype(np.int8),          # a click happened, in or after its window
        "would_convert": would_convert.astype(np.int8),  # would convert if clicked
        "click": click,
        "conversion": conversion,
        "conversion_value": np.round(value, 2),
    })
