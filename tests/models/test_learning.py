"""Every model learns the toy task: its losses fall and its ranking beats chance by far."""
import pytest
import torch

from pipeline.models import MODELS, build_model
from pipeline.training.metrics import auc
from tests.models.conftest import evaluate, small_spec, train


@pytest.mark.parametrize("name", list(MODELS))
def test_model_learns_the_toy_task(name, toy):
    spec = small_spec()
    torch.manual_seed(0)
    initial, _ = evaluate(name, build_model(name, spec), toy, spec)
    model, _, _ = train(name, spec, toy, steps=200, seed=0)
    final, probs = evaluate(name, model, toy, spec)

    for key in initial:
        if key != "calibration":  # AITM's calibrator starts and stays near 0
            assert final[key] < initial[key], (key, initial[key], final[key])
    if "p_ctr" in probs:
        assert auc(toy["click"].numpy(), probs["p_ctr"].numpy()) > 0.75
    if "p_cvr" in probs:
        clicked = toy["click"] == 1
        assert auc(toy["conversion"][clicked].numpy(), probs["p_cvr"][clicked].numpy()) > 0.7
