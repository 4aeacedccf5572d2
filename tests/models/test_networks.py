import pytest
import torch

from pipeline.models import MODELS, build_model, loss_names, probabilities, task_losses
from tests.models.conftest import small_spec, train

OUTPUTS = {
    "ctr_dnn": {"ctr"},
    "cvr_naive": {"cvr"},
    "reweight": {"ctr"},
    "shared_bottom": {"ctr", "cvr", "value"},
    "esmm": {"ctr", "cvr", "value"},
    "omoe": {"ctr", "cvr", "value"},
    "mmoe": {"ctr", "cvr", "value"},
    "ple": {"ctr", "cvr", "value"},
    "aitm": {"ctr", "ctcvr", "value"},
}
LOSSES = {
    "ctr_dnn": {"ctr"},
    "cvr_naive": {"cvr"},
    "reweight": {"ctr"},
    "shared_bottom": {"ctr", "ctcvr", "value"},
    "esmm": {"ctr", "ctcvr", "value"},
    "omoe": {"ctr", "ctcvr", "value"},
    "mmoe": {"ctr", "ctcvr", "value"},
    "ple": {"ctr", "ctcvr", "value"},
    "aitm": {"ctr", "ctcvr", "calibration", "value"},
}
PROBABILITIES = {
    "ctr_dnn": {"p_ctr"},
    "cvr_naive": {"p_cvr"},
    "reweight": {"p_ctr"},
    **{name: {"p_ctr", "p_cvr", "p_ctcvr", "p_value"} for name in
       ("shared_bottom", "esmm", "omoe", "mmoe", "ple", "aitm")},
}


def test_the_registry_has_the_nine_models():
    assert set(MODELS) == set(OUTPUTS)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_losses_backward_and_probabilities(name, spec, batch):
    torch.manual_seed(0)
    model = build_model(name, spec)
    logits = model(batch["cat"], batch["num"])
    assert set(logits) == OUTPUTS[name] == set(model.outputs)
    for logit in logits.values():
        assert logit.shape == (32,) and torch.isfinite(logit).all()
    # Logits, not probabilities: large inputs push a logit out of [0, 1], never a sigmoid.
    loud = model(batch["cat"], 100 * batch["num"])
    assert all(((v < 0) | (v > 1)).any() for v in loud.values())

    losses = task_losses(name, logits, batch, spec)
    assert set(losses) == LOSSES[name] == set(loss_names(name, spec))
    for loss in losses.values():
        assert loss.dim() == 0 and torch.isfinite(loss)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.shared_parameters())

    probs = probabilities(name, logits, spec)
    assert set(probs) == PROBABILITIES[name]
    for key, p in probs.items():
        assert p.shape == (32,)
        if key in ("p_ctr", "p_cvr") and key[2:] in logits:
            assert torch.equal(p, torch.sigmoid(logits[key[2:]]))
        if key != "p_value":
            assert ((p >= 0) & (p <= 1)).all(), key


def test_esmm_ctcvr_is_the_product_of_probabilities(spec, batch):
    torch.manual_seed(0)
    model = build_model("esmm", spec)
    logits = model(batch["cat"], batch["num"])
    p = probabilities("esmm", logits, spec)
    assert torch.allclose(p["p_ctcvr"], p["p_ctr"] * p["p_cvr"])
    assert torch.allclose(p["p_ctcvr"], torch.sigmoid(logits["ctr"]) * torch.sigmoid(logits["cvr"]))
    assert (p["p_ctcvr"] <= p["p_ctr"]).all()


def test_esmm_cvr_tower_learns_only_through_the_product(spec, batch):
    torch.manual_seed(0)
    model = build_model("esmm", spec)
    losses = task_losses("esmm", model(batch["cat"], batch["num"]), batch, spec)
    assert "cvr" not in losses
    cvr_tower = list(model.towers["cvr"].parameters())
    from_ctr = torch.autograd.grad(losses["ctr"], cvr_tower, retain_graph=True, allow_unused=True)
    from_ctcvr = torch.autograd.grad(losses["ctcvr"], cvr_tower, allow_unused=True)
    assert all(g is None for g in from_ctr)
    assert all(g is not None for g in from_ctcvr) and any(g.abs().sum() > 0 for g in from_ctcvr)


def test_aitm_derives_cvr_from_ctcvr(spec, batch):
    torch.manual_seed(0)
    logits = build_model("aitm", spec)(batch["cat"], batch["num"])
    p = probabilities("aitm", logits, spec)
    assert torch.allclose(p["p_ctcvr"], torch.sigmoid(logits["ctcvr"]))
    assert torch.allclose(p["p_cvr"], (p["p_ctcvr"] / p["p_ctr"]).clamp(0, 1))


def test_outputs_follow_spec_tasks():
    spec = small_spec(tasks=("ctr",))
    assert set(build_model("mmoe", spec).outputs) == {"ctr"}
    assert set(build_model("esmm", spec).outputs) == {"ctr", "cvr"}
    assert set(build_model("aitm", spec).outputs) == {"ctr", "ctcvr"}
    assert loss_names("ple", small_spec(tasks=("ctr", "cvr"), cvr_mode="masked")) == ("ctr", "cvr")


@pytest.mark.parametrize("layers", [2, 3])
def test_ple_stacks_extraction_layers(layers, batch):
    spec = small_spec(ple_layers=layers)
    torch.manual_seed(0)
    model = build_model("ple", spec)
    assert len(model.layers) == layers
    assert all(layer.shared_gate is not None for layer in model.layers[:-1]) and model.layers[-1].shared_gate is None
    logits = model(batch["cat"], batch["num"])
    assert {k: v.shape for k, v in logits.items()} == {k: (32,) for k in spec.tasks}
    sum(task_losses("ple", logits, batch, spec).values()).backward()
    assert all(p.grad is not None for p in model.layers[0].parameters())


def test_unknown_model_name_lists_the_known_ones(spec):
    with pytest.raises(ValueError, match="unknown model 'dcn'.*esmm.*mmoe.*ple"):
        build_model("dcn", spec)


def test_same_seed_same_parameters(spec):
    torch.manual_seed(0)
    first = build_model("mmoe", spec)
    torch.manual_seed(0)
    second = build_model("mmoe", spec)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("weighting", ["fixed", "gradnorm"])
def test_same_seed_same_training_losses(weighting, spec, toy):
    _, _, first = train("ple", spec, toy, steps=20, weighting=weighting)
    _, _, second = train("ple", spec, toy, steps=20, weighting=weighting)
    assert first == second
