import pytest

from pipeline.models import ModelSpec
from tests.models.conftest import CARDINALITIES, small_spec


def test_defaults_and_lists_become_tuples():
    spec = ModelSpec(cardinalities=[3, 4], num_numeric=0, bottom_hidden=[8])
    assert spec.cardinalities == (3, 4) and spec.bottom_hidden == (8,)
    assert spec.tasks == ("ctr", "cvr") and spec.cvr_mode == "entire_space"
    hash(spec)


@pytest.mark.parametrize("overrides, field", [
    ({"cvr_mode": "clicked_only"}, "cvr_mode"),
    ({"tasks": ("ctr", "gmv")}, "tasks"),
    ({"tasks": ("cvr",)}, "tasks"),
    ({"tasks": ("ctr", "ctr")}, "tasks"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"bottom_hidden": (32, 0)}, "bottom_hidden"),
    ({"expert_hidden": ()}, "expert_hidden"),
    ({"ple_layers": 0}, "ple_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"cardinalities": ()}, "cardinalities"),
    ({"cardinalities": (3, 0)}, "cardinalities"),
    ({"num_numeric": -1}, "num_numeric"),
    ({"reweight_value": -1.0}, "reweight_value"),
])
def test_bad_values_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        small_spec(**overrides)


def test_bad_cvr_mode_lists_the_modes():
    with pytest.raises(ValueError, match="entire_space.*masked"):
        ModelSpec(cardinalities=CARDINALITIES, num_numeric=2, cvr_mode="clicked")
