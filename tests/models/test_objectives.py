import pytest
import torch
import torch.nn.functional as F

from pipeline.models import build_model, loss_names, probabilities, task_losses
from tests.models.conftest import small_spec


def logits_of(name, spec, batch):
    torch.manual_seed(0)
    return build_model(name, spec)(batch["cat"], batch["num"])


def test_masked_cvr_uses_clicked_rows_only(batch):
    spec = small_spec(cvr_mode="masked")
    logits = logits_of("mmoe", spec, batch)
    losses = task_losses("mmoe", logits, batch, spec)
    assert set(losses) == {"ctr", "cvr", "value"}
    clicked = batch["click"] == 1
    expected = F.binary_cross_entropy_with_logits(logits["cvr"][clicked], batch["conversion"][clicked])
    assert torch.allclose(losses["cvr"], expected)


def test_entire_space_cvr_is_bce_of_the_product_over_all_rows(batch):
    spec = small_spec(cvr_mode="entire_space")
    logits = logits_of("shared_bottom", spec, batch)
    losses = task_losses("shared_bottom", logits, batch, spec)
    p_ctcvr = torch.sigmoid(logits["ctr"]) * torch.sigmoid(logits["cvr"])
    assert torch.allclose(losses["ctcvr"], F.binary_cross_entropy(p_ctcvr, batch["conversion"]))


@pytest.mark.parametrize("name", ["cvr_naive", "ple"])
def test_batch_without_clicks_gives_zero_masked_losses_that_backpropagate(name, batch):
    spec = small_spec(cvr_mode="masked")
    batch = {**batch, "click": torch.zeros(32), "conversion": torch.zeros(32), "conversion_value": torch.zeros(32)}
    torch.manual_seed(0)
    model = build_model(name, spec)
    losses = task_losses(name, model(batch["cat"], batch["num"]), batch, spec)
    assert losses["cvr"].item() == 0.0
    if "value" in losses:
        assert losses["value"].item() == 0.0
    sum(losses.values()).backward()


def test_reweight_weights_by_conversion_and_value(batch):
    spec = small_spec(reweight_conversion=5.0, reweight_value=1.0)
    logits = logits_of("reweight", spec, batch)
    weight = 1 + 5.0 * batch["conversion"] + torch.log1p(batch["conversion_value"])
    per_row = F.binary_cross_entropy_with_logits(logits["ctr"], batch["click"], reduction="none")
    losses = task_losses("reweight", logits, batch, spec)
    assert torch.allclose(losses["ctr"], (weight * per_row).sum() / weight.sum())
    assert not torch.allclose(losses["ctr"], per_row.mean())


def test_value_loss_is_mse_of_log1p_value_on_converted_rows(batch):
    spec = small_spec()
    logits = logits_of("esmm", spec, batch)
    converted = batch["conversion"] == 1
    expected = F.mse_loss(logits["value"][converted], torch.log1p(batch["conversion_value"][converted]))
    assert torch.allclose(task_losses("esmm", logits, batch, spec)["value"], expected)


def test_aitm_calibration_penalises_ctcvr_above_ctr(batch):
    spec = small_spec()
    logits = {"ctr": torch.full((32,), -2.0), "ctcvr": torch.full((32,), 1.0), "value": torch.zeros(32)}
    p = probabilities("aitm", logits, spec)
    assert torch.equal(p["p_cvr"], torch.ones(32))
    calibration = task_losses("aitm", logits, batch, spec)["calibration"]
    assert torch.allclose(calibration, torch.sigmoid(torch.tensor(1.0)) - torch.sigmoid(torch.tensor(-2.0)))


def test_loss_names_per_model():
    both = small_spec(tasks=("ctr", "cvr"))
    assert loss_names("esmm", both) == ("ctr", "ctcvr")
    assert loss_names("aitm", both) == ("ctr", "ctcvr", "calibration")
    assert loss_names("omoe", both) == ("ctr", "ctcvr")
    assert loss_names("omoe", small_spec(tasks=("ctr", "cvr"), cvr_mode="masked")) == ("ctr", "cvr")
    assert loss_names("cvr_naive", both) == ("cvr",)
    with pytest.raises(ValueError, match="unknown model"):
        loss_names("nope", both)
