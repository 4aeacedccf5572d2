"""Every model learns the toy task: its losses fall and its ranking beats chance by far."""
import pytest

from pipeline.models import MODELS
from pipeline.metrics import auc
from tests.models.conftest import build, evaluate, small_spec, train


@pytest.mark.parametrize("name", list(MODELS))
def test_model_learns_the_toy_task(name, toy):
    initial, _ = evaluate(build(name), toy)
    model, _, _ = train(name, small_spec(name), toy, steps=200, seed=0)
    final, probs = evaluate(model, toy)

    for key in initial:
        # AITM's calibrator starts and stays near 0; ESCM²-DR's imputation error (e - e~) is
        # (r~ - r) times the CVR logit, which starts at 0 and grows as pCVR learns.
        if key not in ("calibration", "imputation"):
            assert final[key] < initial[key], (key, initial[key], final[key])
    if "p_ctr" in probs:
        assert auc(toy["click"].numpy(), probs["p_ctr"].numpy()) > 0.75
    if "p_cvr" in probs:
        clicked = toy["click"] == 1
        assert auc(toy["conversion"][clicked].numpy(), probs["p_cvr"][clicked].numpy()) > 0.7
