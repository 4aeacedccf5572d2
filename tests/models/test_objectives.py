import pytest
import torch
import torch.nn.functional as F

from tests.models.conftest import build


def logits_of(model, batch):
    return model(batch["cat"], batch["num"])


def test_masked_cvr_uses_clicked_rows_only(batch):
    model = build("mmoe", cvr_mode="masked")
    logits = logits_of(model, batch)
    losses = model.losses(logits, batch)
    assert set(losses) == {"ctr", "cvr", "value"}
    clicked = batch["click"] == 1
    expected = F.binary_cross_entropy_with_logits(logits["cvr"][clicked], batch["conversion"][clicked])
    assert torch.allclose(losses["cvr"], expected)


def test_entire_space_cvr_is_bce_of_the_product_over_all_rows(batch):
    model = build("shared_bottom", cvr_mode="entire_space")
    logits = logits_of(model, batch)
    p_ctcvr = torch.sigmoid(logits["ctr"]) * torch.sigmoid(logits["cvr"])
    assert torch.allclose(model.losses(logits, batch)["ctcvr"], F.binary_cross_entropy(p_ctcvr, batch["conversion"]))


@pytest.mark.parametrize("name", ["cvr_naive", "ple", "lr"])
def test_batch_without_clicks_gives_zero_masked_losses_that_backpropagate(name, batch):
    batch = {**batch, "click": torch.zeros(32), "conversion": torch.zeros(32), "conversion_value": torch.zeros(32)}
    model = build(name, cvr_mode="masked")
    losses = model.losses(logits_of(model, batch), batch)
    assert losses["cvr"].item() == 0.0
    if "value" in losses:
        assert losses["value"].item() == 0.0
    sum(losses.values()).backward()


def test_logistic_regression_trains_cvr_on_clicked_rows(batch):
    model = build("lr")
    with torch.no_grad():
        model.wide.weights.embedding.weight.normal_()
    logits = logits_of(model, batch)
    clicked = batch["click"] == 1
    expected = F.binary_cross_entropy_with_logits(logits["cvr"][clicked], batch["conversion"][clicked])
    assert torch.allclose(model.losses(logits, batch)["cvr"], expected)
    p = model.probabilities(logits)
    assert torch.allclose(p["p_ctcvr"], p["p_ctr"] * p["p_cvr"])


def test_reweight_weights_by_conversion_and_value(batch):
    model = build("reweight", reweight_conversion=5.0, reweight_value=1.0)
    logits = logits_of(model, batch)
    weight = 1 + 5.0 * batch["conversion"] + torch.log1p(batch["conversion_value"])
    per_row = F.binary_cross_entropy_with_logits(logits["ctr"], batch["click"], reduction="none")
    losses = model.losses(logits, batch)
    assert torch.allclose(losses["ctr"], (weight * per_row).sum() / weight.sum())
    assert not torch.allclose(losses["ctr"], per_row.mean())


def test_value_loss_is_mse_of_log1p_value_on_converted_rows(batch):
    model = build("esmm")
    logits = logits_of(model, batch)
    converted = batch["conversion"] == 1
    expected = F.mse_loss(logits["value"][converted], torch.log1p(batch["conversion_value"][converted]))
    assert torch.allclose(model.losses(logits, batch)["value"], expected)


def test_aitm_calibration_penalises_ctcvr_above_ctr(batch):
    model = build("aitm")
    logits = {"ctr": torch.full((32,), -2.0), "ctcvr": torch.full((32,), 1.0), "value": torch.zeros(32)}
    p = model.probabilities(logits)
    assert torch.equal(p["p_cvr"], torch.ones(32))
    calibration = model.losses(logits, batch)["calibration"]
    assert torch.allclose(calibration, torch.sigmoid(torch.tensor(1.0)) - torch.sigmoid(torch.tensor(-2.0)))


def test_loss_names_per_model():
    both = {"tasks": ("ctr", "cvr")}
    assert build("esmm", **both).loss_names == ("ctr", "ctcvr", "cvr_click")
    assert build("esmm", **both, click_cvr_weight=0.0).loss_names == ("ctr", "ctcvr")
    assert build("escm2_ips", **both).loss_names == ("ctr", "ctcvr", "cvr_ips")
    assert build("escm2_dr", **both).loss_names == ("ctr", "ctcvr", "cvr_dr", "imputation")
    assert build("dcmt", **both).loss_names == ("ctr", "ctcvr", "cvr_twin")
    assert build("aitm", **both).loss_names == ("ctr", "ctcvr", "calibration")
    assert build("omoe", **both).loss_names == ("ctr", "cvr")
    assert build("omoe", tasks=("ctr", "cvr"), cvr_mode="entire_space").loss_names == ("ctr", "ctcvr")
    assert build("omoe", tasks=("ctr", "cvr"), cvr_mode="masked").loss_names == ("ctr", "cvr")
    assert build("cvr_naive", **both).loss_names == ("cvr",)
    assert build("lr", **both).loss_names == ("ctr", "cvr")


def test_esmm_click_space_cvr_loss_is_bce_on_clicked_rows_and_weighted(batch):
    model = build("esmm", tasks=("ctr", "cvr"), click_cvr_weight=0.7)
    logits = logits_of(model, batch)
    clicked = batch["click"] == 1
    expected = F.binary_cross_entropy_with_logits(logits["cvr"][clicked], batch["conversion"][clicked])
    assert torch.allclose(model.losses(logits, batch)["cvr_click"], expected)
    assert model.loss_weights == {"cvr_click": 0.7}
    assert "cvr_click" not in build("escm2_ips", tasks=("ctr", "cvr")).loss_names


# Hand-made logits and labels for the counterfactual risks: 4 exposures, 2 clicked, 1 converted.
CLICK = torch.tensor([1.0, 1.0, 0.0, 0.0])
CONVERSION = torch.tensor([1.0, 0.0, 0.0, 0.0])
COUNTERFACTUAL_BATCH = {"cat": torch.zeros(4, 5, dtype=torch.long), "num": torch.zeros(4, 2), "click": CLICK,
                        "conversion": CONVERSION, "conversion_value": torch.zeros(4)}


def test_escm2_ips_risk_weights_clicked_rows_by_inverse_click_propensity():
    model = build("escm2_ips", tasks=("ctr", "cvr"), propensity_floor=0.05, counterfactual_weight=0.3)
    p_ctr = torch.tensor([0.5, 0.01, 0.2, 0.1])  # 0.01 is below the floor: weight 1 / 0.05
    logits = {"ctr": torch.logit(p_ctr), "cvr": torch.tensor([0.3, -1.0, 2.0, 0.0], requires_grad=True)}
    error = F.binary_cross_entropy_with_logits(logits["cvr"], CONVERSION, reduction="none")
    expected = (error[0] / 0.5 + error[1] / 0.05) / 4
    losses = model.losses(logits, COUNTERFACTUAL_BATCH)
    assert torch.allclose(losses["cvr_ips"], expected)
    assert model.loss_weights == {"cvr_ips": 0.3}
    # The propensity is a constant: the risk moves pCVR, never pCTR.
    assert losses["cvr_ips"].grad_fn is not None
    logits["ctr"].requires_grad_(True)
    ctr_grad = torch.autograd.grad(model.losses(logits, COUNTERFACTUAL_BATCH)["cvr_ips"], logits["ctr"],
                                   allow_unused=True)[0]
    assert ctr_grad is None or torch.all(ctr_grad == 0)


def test_escm2_dr_risk_imputes_unclicked_rows_and_corrects_clicked_ones():
    model = build("escm2_dr", tasks=("ctr", "cvr"), propensity_floor=0.05)
    p_ctr = torch.tensor([0.5, 0.25, 0.2, 0.1])
    cvr = torch.tensor([0.3, -1.0, 2.0, 0.0], requires_grad=True)
    imputed = torch.tensor([0.8, 0.1, 0.3, 0.05])
    logits = {"ctr": torch.logit(p_ctr), "cvr": cvr, "imputation": torch.logit(imputed).requires_grad_(True)}
    losses = model.losses(logits, COUNTERFACTUAL_BATCH)
    error = F.binary_cross_entropy_with_logits(cvr, CONVERSION, reduction="none")
    imputed_error = F.binary_cross_entropy_with_logits(cvr, imputed, reduction="none")
    expected = (imputed_error + CLICK * (error - imputed_error) / p_ctr).mean()
    assert torch.allclose(losses["cvr_dr"], expected)
    expected_fit = (CLICK * (error - imputed_error).pow(2) / p_ctr).mean()
    assert torch.allclose(losses["imputation"], expected_fit)
    # The doubly robust risk moves pCVR only; the imputation loss moves the imputation only.
    assert torch.autograd.grad(losses["cvr_dr"], logits["imputation"], retain_graph=True, allow_unused=True)[0] is None
    assert torch.autograd.grad(losses["imputation"], cvr, retain_graph=True, allow_unused=True)[0] is None


def test_dcmt_twin_risk_and_its_constraint():
    model = build("dcmt", tasks=("ctr", "cvr"), propensity_floor=0.05)
    p_ctr = torch.tensor([0.5, 0.25, 0.2, 0.1])
    factual, counterfactual = torch.tensor([0.3, -1.0, 2.0, 0.0]), torch.tensor([-0.5, 1.0, 0.5, 3.0])
    logits = {"ctr": torch.logit(p_ctr), "cvr": factual, "cvr_counterfactual": counterfactual}
    clicked = F.binary_cross_entropy_with_logits(factual, CONVERSION, reduction="none") / p_ctr
    unclicked = F.binary_cross_entropy_with_logits(counterfactual, 1 - CONVERSION, reduction="none") / (1 - p_ctr)
    constraint = (1 - torch.sigmoid(factual) - torch.sigmoid(counterfactual)).abs()
    expected = (CLICK * clicked + (1 - CLICK) * unclicked + constraint).mean()
    assert torch.allclose(model.losses(logits, COUNTERFACTUAL_BATCH)["cvr_twin"], expected)
    # pCVR is the factual tower's; the counterfactual one only shapes training.
    assert torch.equal(model.probabilities(logits)["p_cvr"], torch.sigmoid(factual))
