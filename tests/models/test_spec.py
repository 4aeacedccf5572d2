import pytest

from pipeline.errors import ConfigError
from pipeline.models import ModelSpec
from tests.models.conftest import small_spec


def test_defaults_and_lists_become_tuples():
    spec = ModelSpec(bottom_hidden=[8], tasks=["ctr", "cvr"])
    assert spec.bottom_hidden == (8,) and spec.tasks == ("ctr", "cvr")
    assert spec.name == "esmm" and spec.cvr_mode == "masked" and spec.wide
    hash(spec)


@pytest.mark.parametrize("overrides, field", [
    ({"name": "dcn"}, "model.name"),
    ({"cvr_mode": "clicked_only"}, "model.cvr_mode"),
    ({"tasks": ("ctr", "gmv")}, "model.tasks"),
    ({"tasks": ("cvr",)}, "model.tasks"),
    ({"tasks": ("ctr", "ctr")}, "model.tasks"),
    ({"embedding_dim": 0}, "model.embedding_dim"),
    ({"bottom_hidden": (32, 0)}, "model.bottom_hidden"),
    ({"expert_hidden": ()}, "model.expert_hidden"),
    ({"ple_layers": 0}, "model.ple_layers"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"dropout": -0.1}, "model.dropout"),
    ({"reweight_value": -1.0}, "model.reweight_value"),
    ({"counterfactual_weight": -0.1}, "model.counterfactual_weight"),
    ({"propensity_floor": 0.0}, "model.propensity_floor"),
])
def test_bad_values_raise_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        small_spec(**overrides)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'dcn'; known models: lr, ctr_dnn, .*esmm, escm2_ips, escm2_dr, dcmt"):
        ModelSpec(name="dcn")


def test_bad_cvr_mode_lists_the_modes():
    with pytest.raises(ConfigError, match="entire_space.*masked"):
        ModelSpec(cvr_mode="clicked")
