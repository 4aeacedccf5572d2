import subprocess
import sys

import pytest
import torch

from pipeline.models import MODELS, model_class
from tests.models.conftest import INPUTS, build, small_spec, train

OUTPUTS = {
    "lr": {"ctr", "cvr", "value"},
    "ctr_dnn": {"ctr"},
    "cvr_naive": {"cvr"},
    "reweight": {"ctr"},
    "shared_bottom": {"ctr", "cvr", "value"},
    "esmm": {"ctr", "cvr", "value"},
    "escm2_ips": {"ctr", "cvr", "value"},
    "escm2_dr": {"ctr", "cvr", "value", "imputation"},
    "dcmt": {"ctr", "cvr", "value", "cvr_counterfactual"},
    "omoe": {"ctr", "cvr", "value"},
    "mmoe": {"ctr", "cvr", "value"},
    "ple": {"ctr", "cvr", "value"},
    "aitm": {"ctr", "ctcvr", "value"},
}
LOSSES = {
    "lr": {"ctr", "cvr", "value"},
    "ctr_dnn": {"ctr"},
    "cvr_naive": {"cvr"},
    "reweight": {"ctr"},
    "shared_bottom": {"ctr", "cvr", "value"},
    "esmm": {"ctr", "ctcvr", "value", "cvr_click"},
    "escm2_ips": {"ctr", "ctcvr", "value", "cvr_ips"},
    "escm2_dr": {"ctr", "ctcvr", "value", "cvr_dr", "imputation"},
    "dcmt": {"ctr", "ctcvr", "value", "cvr_twin"},
    "omoe": {"ctr", "cvr", "value"},
    "mmoe": {"ctr", "cvr", "value"},
    "ple": {"ctr", "cvr", "value"},
    "aitm": {"ctr", "ctcvr", "calibration", "value"},
}
MULTI_TASK_ESTIMATES = {"p_ctr", "p_cvr", "p_ctcvr", "p_value"}
ESTIMATES = {"ctr_dnn": {"p_ctr"}, "cvr_naive": {"p_cvr"}, "reweight": {"p_ctr"},
             **{name: MULTI_TASK_ESTIMATES for name in OUTPUTS if name not in ("ctr_dnn", "cvr_naive", "reweight")}}


def test_the_registry_is_the_one_list_of_models():
    assert list(MODELS) == list(OUTPUTS)
    assert all(model_class(name).name == name for name in MODELS)


def test_a_conf_and_the_command_line_load_without_torch():
    # The registry names the classes without importing them: `pipeline generate`, build-samples
    # and a conf check start without torch's second or two.
    code = "import sys, pipeline.cli, pipeline.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_losses_backward_and_probabilities(name, batch):
    model = build(name)
    logits = model(batch["cat"], batch["num"])
    assert set(logits) == OUTPUTS[name] == set(model.outputs)
    for logit in logits.values():
        assert logit.shape == (32,) and torch.isfinite(logit).all()
    # Logits, not probabilities: large inputs push a logit out of [0, 1], never a sigmoid.
    loud = model(batch["cat"], 100 * batch["num"])
    if name != "lr":  # the linear model starts at exactly 0
        assert all(((v < 0) | (v > 1)).any() for v in loud.values())

    losses = model.losses(logits, batch)
    assert set(losses) == LOSSES[name] == set(model.loss_names)
    assert set(model.loss_weights) <= set(model.loss_names)
    for loss in losses.values():
        assert loss.dim() == 0 and torch.isfinite(loss)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.shared_parameters())

    probs = model.probabilities(logits)
    assert set(probs) == ESTIMATES[name] == set(model.estimates)
    for key, p in probs.items():
        assert p.shape == (32,)
        if key in ("p_ctr", "p_cvr") and key[2:] in logits:
            assert torch.equal(p, torch.sigmoid(logits[key[2:]]))
        if key != "p_value":
            assert ((p >= 0) & (p <= 1)).all(), key


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_start_at_the_priors(name, batch):
    model = build(name, wide=False) if name != "lr" else build(name)
    priors = {"ctr": -3.0, "cvr": -2.5, "ctcvr": -5.5, "value": 1.5}
    model.start_at(priors)
    for key, bias in model.output_biases().items():
        if key in priors:
            assert torch.all(bias == priors[key]), key


def test_the_wide_part_is_a_linear_model_on_top_of_the_deep_one(batch):
    deep_only, with_wide = build("esmm", wide=False), build("esmm", wide=True)
    assert with_wide.wide is not None and deep_only.wide is None
    with torch.no_grad():
        with_wide.wide.weights.embedding.weight.normal_()
    with_wide.load_state_dict({**with_wide.state_dict(), **deep_only.state_dict()})
    with_wide.eval(), deep_only.eval()
    linear = with_wide.wide(batch["cat"], batch["num"])  # [B, O]
    deep, both = deep_only(batch["cat"], batch["num"]), with_wide(batch["cat"], batch["num"])
    for i, key in enumerate(with_wide.outputs):
        assert torch.allclose(both[key], deep[key] + linear[:, i], atol=1e-6), key


def test_logistic_regression_is_linear_in_its_one_hot_features():
    model = build("lr", tasks=("ctr", "cvr"))
    with torch.no_grad():
        model.wide.weights.embedding.weight.normal_()
        model.wide.linear.weight.normal_()
    cat = torch.tensor([[1, 2, 3, 4, 0]])
    num = torch.tensor([[0.5, -1.0]])
    offsets = model.wide.weights.offsets
    expected = (model.wide.weights.embedding.weight[cat[0] + offsets].sum(0)
                + model.wide.linear.weight @ num[0] + model.wide.linear.bias)
    logits = model(cat, num)
    assert torch.allclose(torch.stack([logits["ctr"][0], logits["cvr"][0]]), expected)


def test_esmm_ctcvr_is_the_product_of_probabilities(batch):
    model = build("esmm")
    logits = model(batch["cat"], batch["num"])
    p = model.probabilities(logits)
    assert torch.allclose(p["p_ctcvr"], p["p_ctr"] * p["p_cvr"])
    assert torch.allclose(p["p_ctcvr"], torch.sigmoid(logits["ctr"]) * torch.sigmoid(logits["cvr"]))
    assert (p["p_ctcvr"] <= p["p_ctr"]).all()


def test_esmm_cvr_tower_learns_only_through_the_product(batch):
    model = build("esmm")
    losses = model.losses(model(batch["cat"], batch["num"]), batch)
    assert "cvr" not in losses
    cvr_tower = list(model.towers["cvr"].parameters())
    from_ctr = torch.autograd.grad(losses["ctr"], cvr_tower, retain_graph=True, allow_unused=True)
    from_ctcvr = torch.autograd.grad(losses["ctcvr"], cvr_tower, allow_unused=True)
    assert all(g is None for g in from_ctr)
    assert all(g is not None for g in from_ctcvr) and any(g.abs().sum() > 0 for g in from_ctcvr)


def test_aitm_derives_cvr_from_ctcvr(batch):
    model = build("aitm")
    logits = model(batch["cat"], batch["num"])
    p = model.probabilities(logits)
    assert torch.allclose(p["p_ctcvr"], torch.sigmoid(logits["ctcvr"]))
    assert torch.allclose(p["p_cvr"], (p["p_ctcvr"] / p["p_ctr"]).clamp(0, 1))


def test_outputs_follow_spec_tasks():
    assert set(build("mmoe", tasks=("ctr",)).outputs) == {"ctr"}
    assert set(build("esmm", tasks=("ctr",)).outputs) == {"ctr", "cvr"}
    assert set(build("aitm", tasks=("ctr",)).outputs) == {"ctr", "ctcvr"}
    assert build("ple", tasks=("ctr", "cvr"), cvr_mode="masked").loss_names == ("ctr", "cvr")


@pytest.mark.parametrize("layers", [2, 3])
def test_ple_stacks_extraction_layers(layers, batch):
    model = build("ple", ple_layers=layers)
    assert len(model.layers) == layers
    assert all(layer.shared_gate is not None for layer in model.layers[:-1]) and model.layers[-1].shared_gate is None
    logits = model(batch["cat"], batch["num"])
    assert {k: v.shape for k, v in logits.items()} == {k: (32,) for k in model.spec.tasks}
    sum(model.losses(logits, batch).values()).backward()
    assert all(p.grad is not None for p in model.layers[0].parameters())


def test_same_seed_same_parameters():
    first, second = build("mmoe"), build("mmoe")
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("weighting", ["fixed", "gradnorm"])
def test_same_seed_same_training_losses(weighting, spec, toy):
    _, _, first = train("ple", spec, toy, steps=20, weighting=weighting)
    _, _, second = train("ple", spec, toy, steps=20, weighting=weighting)
    assert first == second


def test_inputs_are_the_encoders_shape():
    assert INPUTS.cardinalities == (10, 20, 7, 5, 3)
    with pytest.raises(ValueError, match="cardinalities"):
        type(INPUTS)(cardinalities=(3, 0), num_numeric=1)
    with pytest.raises(ValueError, match="num_numeric"):
        type(INPUTS)(cardinalities=(3,), num_numeric=-1)
    assert small_spec("dcmt").name == "dcmt"
