"""Small specs, random batches and a learnable toy data set for the model tests (torch only)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from pipeline.models import Inputs, LossWeighting, ModelSpec, RankingModel, build_model, make_weighting

CARDINALITIES = (10, 20, 7, 5, 3)
NUM_NUMERIC = 2
INPUTS = Inputs(cardinalities=CARDINALITIES, num_numeric=NUM_NUMERIC)


def small_spec(name: str = "esmm", **overrides) -> ModelSpec:
    """A spec small enough to train in well under a second on a CPU."""
    settings = dict(
        name=name,
        tasks=("ctr", "cvr", "value"),
        embedding_dim=8,
        bottom_hidden=(32, 16),
        tower_hidden=(16,),
        num_experts=3,
        expert_hidden=(16,),
        num_shared_experts=2,
        num_task_experts=1,
        ple_layers=2,
        dropout=0.1,
    )
    settings.update(overrides)
    return ModelSpec(**settings)


def build(name: str, seed: int = 0, **overrides) -> RankingModel:
    """Model ``name`` of ``small_spec(**overrides)`` over the toy inputs, seeded."""
    torch.manual_seed(seed)
    return build_model(small_spec(name, **overrides), INPUTS)


def toy_data(rows: int, seed: int) -> dict[str, Tensor]:
    """Exposures whose labels depend on a few ids and the numeric features.

    Clicks depend on the ids of features 0 and 1 and on numeric 0; conversions of clicked rows
    on the id of feature 2 and numeric 1; values on the id of feature 3. Feature 4 is noise.
    """
    generator = torch.Generator().manual_seed(seed)

    def effects(size: int) -> Tensor:
        return 1.5 * torch.randn(size, generator=generator)

    cat = torch.stack([torch.randint(0, c, (rows,), generator=generator) for c in CARDINALITIES], dim=1)
    num = torch.randn(rows, NUM_NUMERIC, generator=generator)
    click_logit = effects(10)[cat[:, 0]] + effects(20)[cat[:, 1]] + num[:, 0]
    cvr_logit = effects(7)[cat[:, 2]] + num[:, 1]
    click = torch.bernoulli(torch.sigmoid(click_logit), generator=generator)
    conversion = click * torch.bernoulli(torch.sigmoid(cvr_logit), generator=generator)
    log_value = 1.0 + 0.5 * cat[:, 3] + 0.3 * torch.randn(rows, generator=generator)
    return {
        "cat": cat,
        "num": num,
        "click": click,
        "conversion": conversion,
        "conversion_value": conversion * torch.expm1(log_value),
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny: a second thread only adds contention (tens of times slower when
    other jobs load the cores), so they run on one and the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy() -> dict[str, Tensor]:
    return toy_data(rows=4000, seed=7)


@pytest.fixture
def batch() -> dict[str, Tensor]:
    return toy_data(rows=32, seed=1)


@pytest.fixture
def spec() -> ModelSpec:
    return small_spec()


def batches(data: dict[str, Tensor], batch_size: int, steps: int, seed: int) -> list[dict[str, Tensor]]:
    """``steps`` shuffled mini-batches of ``data``, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    rows = len(data["click"])
    order = torch.cat([torch.randperm(rows, generator=generator) for _ in range(steps * batch_size // rows + 1)])
    return [{k: v[order[i * batch_size:(i + 1) * batch_size]] for k, v in data.items()} for i in range(steps)]


def train(
    name: str,
    spec: ModelSpec,
    data: dict[str, Tensor],
    *,
    steps: int,
    weighting: str = "fixed",
    seed: int = 0,
    batch_size: int = 256,
    lr: float = 1e-2,
) -> tuple[RankingModel, LossWeighting, list[float]]:
    """Train model ``name`` of ``spec`` with Adam; returns the model, its loss weighting and each
    step's total."""
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(spec, name=name), INPUTS)
    weights = make_weighting(weighting, list(model.loss_names))
    optimizer = torch.optim.Adam([*model.parameters(), *weights.parameters()], lr=lr)
    totals = []
    model.train()
    for step_batch in batches(data, batch_size, steps, seed):
        logits = model(step_batch["cat"], step_batch["num"])
        total = weights.total(model.losses(logits, step_batch), model.shared_parameters())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return model, weights, totals


@torch.no_grad()
def evaluate(model: RankingModel, data: dict[str, Tensor]) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Losses and probabilities of ``model`` on all of ``data``, in eval mode."""
    model.eval()
    logits = model(data["cat"], data["num"])
    losses = {k: v.item() for k, v in model.losses(logits, data).items()}
    return losses, model.probabilities(logits)
