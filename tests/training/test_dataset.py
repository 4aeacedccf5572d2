"""The training set's request tag: what decides its rows, and nothing else."""
import datetime as dt

from pipeline.config import load_config
from pipeline.training.dataset import request_tag, split_dates

CFG = load_config(None, [])
SPLIT = split_dates(dt.date(2026, 10, 1), dt.date(2026, 10, 2), 1, 1)


def test_a_tag_changes_with_the_samples_the_days_and_the_features_only():
    tag = request_tag(CFG, ("id-a", 3), SPLIT)
    assert tag.startswith("training set ") and tag == request_tag(CFG, ("id-a", 3), SPLIT)
    # Not what the rows do not depend on: the model, the training conf.
    assert request_tag(load_config(None, ["model.name=mmoe", "training.epochs=9"]), ("id-a", 3), SPLIT) == tag
    others = [request_tag(CFG, ("id-a", 4), SPLIT),  # another version of the samples
              request_tag(CFG, ("id-b", 3), SPLIT),  # the samples table created again
              request_tag(CFG, ("id-a", 3), split_dates(dt.date(2026, 10, 1), dt.date(2026, 10, 2), 2, 1)),  # a day more
              request_tag(CFG, ("id-a", 3), split_dates(dt.date(2026, 10, 1), dt.date(2026, 10, 1), 2, 1)),  # encoders fit on one day
              request_tag(load_config(None, ["features.numeric=[]"]), ("id-a", 3), SPLIT)]
    assert len({tag, *others}) == 6
    # The same days with another validation/test cut: the same rows.
    assert request_tag(CFG, ("id-a", 3), split_dates(dt.date(2026, 10, 1), dt.date(2026, 10, 2), 2, 0)) == tag
