"""The synthetic world: users, items and the true click and conversion propensities.

Shape notation: U users, I items, K latent dimensions, N exposures.

True logits are latent-factor affinities plus feature effects:

    ctr_logit = b_ctr + <uc_u, ic_i> + user_bias_u + cat_ctr[c] + brand_ctr[b] + pos_bias[p]
                + device_ctr[d] - 0.15 * z(log price) + s * (0.6 * clickbait_i + 0.5 * browsing_u)
    cvr_logit = b_cvr + <uv_u, iv_i> + quality_i + cat_cvr[c] + age_cvr[a] - 0.35 * z(log price)
                - s * (0.6 * clickbait_i + 0.5 * browsing_u)

with s = ``synth.selection_bias`` and the CVR factors ``uv = r * uc + sqrt(1 - r^2) * noise`` (the
same for items), r = ``synth.shared_interest``. A negative r flips the sign for the items only
(the user factors take |r|), so that the two affinities are anti-correlated: users tend not to buy
what they like to click. Item popularity is Zipf-like with exponent ``synth.item_popularity_exponent``, user activity
log-normal with spread ``synth.user_activity_sigma``; ``synth.affinity_scale`` is the standard
deviation of the user x item affinities (how personal the preferences are); a ``synth.cold_share`` of users and of items
first appears on the last generated day (cold ids for a test on that day). Two forces make the clicked exposures a biased
sample of the entire space: users click what they like and like what they buy (shared interest,
clicked exposures convert more often), while clickbait items and browsing users click more and
buy less (clicked exposures convert less often). A CVR model trained on clicks alone learns from
that biased sample, and from a tenth of the data; the shared interest is also what an entire-space
model such as ESMM can carry from the click task to the conversion task.
``b_ctr`` and ``b_cvr`` are solved so that the mean pCTR over exposures is ``synth.ctr`` and the
mean pCVR over clicks is ``synth.cvr``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.config import SynthConf

DEVICES = np.array(["ios", "android", "web"], dtype=object)
DEVICE_SHARE = np.array([0.45, 0.4, 0.15])
DEVICE_CTR = np.array([0.1, 0.0, -0.2])
AGES = np.array(["18-24", "25-34", "35-44", "45-54", "55+"], dtype=object)
AGE_CVR = np.array([-0.3, 0.1, 0.2, 0.1, -0.1])
GENDERS = np.array(["f", "m", "u"], dtype=object)
MISSING_AGE_RATE = 0.05
MISSING_ACTIVITY_RATE = 0.02
CALIBRATION_DRAWS = 200_000


@dataclass(frozen=True)
class World:
    """Entities and effects; arrays are indexed by entity number."""

    user_ctr_factors: np.ndarray  # [U, K]
    user_cvr_factors: np.ndarray  # [U, K]
    user_bias: np.ndarray         # [U]
    user_browsing: np.ndarray     # [U] browsing (vs buying) intent
    user_age: np.ndarray          # [U] index into AGES, -1 when missing
    user_gender: np.ndarray       # [U] index into GENDERS
    user_activity: np.ndarray     # [U] sessions per day, NaN when missing
    user_weight: np.ndarray       # [U] probability a request comes from the user
    item_ctr_factors: np.ndarray  # [I, K]
    item_cvr_factors: np.ndarray  # [I, K]
    item_category: np.ndarray     # [I]
    item_brand: np.ndarray        # [I]
    item_price: np.ndarray        # [I]
    item_clickbait: np.ndarray    # [I]
    item_quality: np.ndarray      # [I]
    item_weight: np.ndarray       # [I] probability an item fills a slot
    user_arrival: np.ndarray      # [U] index of the first day the user appears on
    item_arrival: np.ndarray      # [I] index of the first day the item appears on
    category_ctr: np.ndarray      # [C]
    category_cvr: np.ndarray      # [C]
    brand_ctr: np.ndarray         # [B]
    position_bias: np.ndarray     # [slots], index 0 is position 1
    selection_bias: float
    b_ctr: float = 0.0
    b_cvr: float = 0.0


def make_world(conf: SynthConf, rng: np.random.Generator) -> World:
    """Draws users, items and effects, then solves the two intercepts for the target rates."""
    u, i, k = conf.num_users, conf.num_items, conf.latent_dim
    # <a, b> of two such vectors has standard deviation ~synth.affinity_scale.
    factor_scale = (conf.affinity_scale / k ** 0.5) ** 0.5
    activity = rng.lognormal(0.0, conf.user_activity_sigma, u)
    user_ctr_factors = rng.normal(0, factor_scale, (u, k))
    item_ctr_factors = rng.normal(0, factor_scale, (i, k))
    world = World(
        user_ctr_factors=user_ctr_factors,
        user_cvr_factors=_correlated(user_ctr_factors, abs(conf.shared_interest), factor_scale, rng),
        user_bias=rng.normal(0, 0.4, u),
        user_browsing=rng.normal(0, 1, u),
        user_age=np.where(rng.random(u) < MISSING_AGE_RATE, -1, rng.integers(0, len(AGES), u)),
        user_gender=rng.integers(0, len(GENDERS), u),
        user_activity=np.where(rng.random(u) < MISSING_ACTIVITY_RATE, np.nan, np.round(activity, 3)),
        user_weight=activity / activity.sum(),
        item_ctr_factors=item_ctr_factors,
        item_cvr_factors=_correlated(item_ctr_factors, conf.shared_interest, factor_scale, rng),
        item_category=rng.integers(0, conf.num_categories, i),
        item_brand=rng.integers(0, conf.num_brands, i),
        item_price=np.round(rng.lognormal(3.2, 0.8, i), 2),
        item_clickbait=rng.normal(0, 1, i),
        item_quality=rng.normal(0, 0.5, i),
        item_weight=_zipf_weights(i, conf.item_popularity_exponent, rng),
        user_arrival=np.zeros(u, dtype=int),
        item_arrival=np.zeros(i, dtype=int),
        category_ctr=rng.normal(0, 0.4, conf.num_categories),
        category_cvr=rng.normal(0, 0.4, conf.num_categories),
        brand_ctr=rng.normal(0, 0.3, conf.num_brands),
        position_bias=-0.15 * np.arange(conf.slots_per_request),
        selection_bias=conf.selection_bias,
    )
    users = rng.choice(u, CALIBRATION_DRAWS, p=world.user_weight)
    items = rng.choice(i, CALIBRATION_DRAWS, p=world.item_weight)
    positions = rng.integers(0, conf.slots_per_request, CALIBRATION_DRAWS)
    devices = rng.choice(len(DEVICES), CALIBRATION_DRAWS, p=DEVICE_SHARE)
    ctr_z = ctr_logit(world, users, items, positions, devices)
    b_ctr = _solve_intercept(ctr_z, np.ones_like(ctr_z), conf.ctr)
    cvr_z = cvr_logit(world, users, items)
    b_cvr = _solve_intercept(cvr_z, sigmoid(b_ctr + ctr_z), conf.cvr)
    world = replace(world, b_ctr=b_ctr, b_cvr=b_cvr)
    if conf.cold_share > 0:  # drawn last, so that the world above is the same with or without
        last_day = conf.days - 1
        world = replace(world, user_arrival=np.where(rng.random(u) < conf.cold_share, last_day, 0),
                        item_arrival=np.where(rng.random(i) < conf.cold_share, last_day, 0))
    return world


def present_weights(weights: np.ndarray, arrival: np.ndarray, day_index: int) -> np.ndarray:
    """``weights`` [U or I] of the entities that have appeared by day ``day_index``, renormalized."""
    if (arrival <= day_index).all():
        return weights
    present = np.where(arrival <= day_index, weights, 0.0)
    return present / present.sum()


def ctr_logit(world: World, users: np.ndarray, items: np.ndarray, positions: np.ndarray,
              devices: np.ndarray) -> np.ndarray:
    """True click logit [N] of exposures (user, item, 0-based position, device index)."""
    affinity = np.einsum("nk,nk->n", world.user_ctr_factors[users], world.item_ctr_factors[items])
    return (world.b_ctr + affinity + world.user_bias[users]
            + world.category_ctr[world.item_category[items]] + world.brand_ctr[world.item_brand[items]]
            + world.position_bias[positions] + DEVICE_CTR[devices]
            - 0.15 * _log_price_z(world.item_price[items])
            + world.selection_bias * _click_not_buy(world, users, items))


def cvr_logit(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True would-convert-if-clicked logit [N]."""
    affinity = np.einsum("nk,nk->n", world.user_cvr_factors[users], world.item_cvr_factors[items])
    age_effect = np.where(world.user_age[users] >= 0, AGE_CVR[world.user_age[users]], 0.0)
    return (world.b_cvr + affinity + world.item_quality[items]
            + world.category_cvr[world.item_category[items]] + age_effect
            - 0.35 * _log_price_z(world.item_price[items])
            - world.selection_bias * _click_not_buy(world, users, items))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _correlated(factors: np.ndarray, r: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Factors of the same scale whose correlation with ``factors`` is ``r``."""
    return r * factors + np.sqrt(1.0 - r * r) * rng.normal(0, scale, factors.shape)


def _click_not_buy(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The propensity that raises clicks and lowers conversions (selection bias)."""
    return 0.6 * world.item_clickbait[items] + 0.5 * world.user_browsing[users]


def _log_price_z(price: np.ndarray) -> np.ndarray:
    return (np.log(price) - 3.2) / 0.8


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + 10.0) ** exponent
    weights = rng.permutation(weights)
    return weights / weights.sum()


def _solve_intercept(z: np.ndarray, weight: np.ndarray, target: float) -> float:
    """Bisection for b such that the ``weight``-weighted mean of sigmoid(b + z) is ``target``."""
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if np.average(sigmoid(mid + z), weights=weight) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
