import pytest
import torch

from pipeline.models import make_weighting
from tests.models.conftest import build, small_spec, train

INITIAL = {"ctr": 1.0, "cvr": 1.0, "value": 1.0}  # mmoe with its default masked CVR head


def test_fixed_weights_stay_fixed(toy):
    _, weighting, _ = train("mmoe", small_spec(), toy, steps=30, weighting="fixed")
    assert weighting.weights() == INITIAL
    assert make_weighting("fixed", ["ctr", "cvr"], fixed={"cvr": 2.0}).weights() == {"ctr": 1.0, "cvr": 2.0}


@pytest.mark.parametrize("kind", ["uncertainty", "gradnorm"])
def test_learned_weights_move(kind, toy):
    assert make_weighting(kind, list(INITIAL)).weights() == INITIAL
    _, weighting, totals = train("mmoe", small_spec(), toy, steps=30, weighting=kind)
    weights = weighting.weights()
    assert set(weights) == set(INITIAL)
    assert all(w > 0 for w in weights.values())
    assert any(abs(weights[k] - INITIAL[k]) > 1e-2 for k in INITIAL), weights
    if kind == "gradnorm":
        assert sum(weights.values()) == pytest.approx(len(INITIAL), rel=1e-5)
        # The value loss (MSE on log1p values) dwarfs the BCE terms, so GradNorm lowers its weight.
        assert weights["value"] < 1.0
    assert all(torch.isfinite(torch.tensor(t)) for t in totals)


def test_gradnorm_total_uses_the_weights_and_survives_a_zero_loss(batch):
    batch = {**batch, "click": torch.zeros(32), "conversion": torch.zeros(32), "conversion_value": torch.zeros(32)}
    model = build("mmoe", cvr_mode="masked")
    weighting = make_weighting("gradnorm", ["ctr", "cvr", "value"])
    for _ in range(3):
        losses = model.losses(model(batch["cat"], batch["num"]), batch)
        before = weighting.weights()
        total = weighting.total(losses, model.shared_parameters())
        assert torch.allclose(total, sum(before[k] * losses[k] for k in losses))
        total.backward()
    # Only "ctr" is active; a lone active task is already at its target.
    assert torch.isnan(weighting.initial_losses[1:]).all()
    assert weighting.weights() == pytest.approx({"ctr": 1.0, "cvr": 1.0, "value": 1.0})


def test_uncertainty_skips_zero_losses():
    weighting = make_weighting("uncertainty", ["ctr", "cvr"])
    total = weighting.total({"ctr": torch.tensor(0.5), "cvr": torch.tensor(0.0)}, [])
    total.backward()
    assert weighting.log_variances.grad[1] == 0
    assert torch.allclose(total, torch.tensor(0.5))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown loss weighting 'dwa'"):
        make_weighting("dwa", ["ctr"])
    with pytest.raises(ValueError, match="unknown losses"):
        make_weighting("fixed", ["ctr"], fixed={"cvr": 1.0})
    with pytest.raises(ValueError, match="only for kind 'fixed'"):
        make_weighting("gradnorm", ["ctr"], fixed={"ctr": 1.0})
    with pytest.raises(ValueError, match="expected losses"):
        make_weighting("fixed", ["ctr", "cvr"]).total({"ctr": torch.tensor(1.0)}, [])


def test_gradnorm_state_dict_holds_its_optimizer(tmp_path, batch):
    model = build("esmm")
    names = list(model.loss_names)
    original = make_weighting("gradnorm", names)

    def step(weighting):
        losses = model.losses(model(batch["cat"], batch["num"]), batch)
        weighting.total(losses, model.shared_parameters())

    model.eval()  # no dropout: both weightings see the same losses
    for _ in range(3):
        step(original)
    torch.save(original.state_dict(), tmp_path / "weighting.pt")
    resumed = make_weighting("gradnorm", names)
    resumed.load_state_dict(torch.load(tmp_path / "weighting.pt", weights_only=True))
    assert resumed.weights() == original.weights()
    assert torch.equal(resumed.initial_losses, original.initial_losses)
    saved, loaded = original._optimizer.state_dict()["state"][0], resumed._optimizer.state_dict()["state"][0]
    assert all(torch.equal(saved[k], loaded[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    step(original)
    step(resumed)
    assert resumed.weights() == original.weights()
