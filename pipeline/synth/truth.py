"""What the generator knows, for evaluation: the true probabilities of each generated exposure.

Evaluation compares a model with them (the oracle AUC, the CVR over the entire space against
would-convert labels) when the data it reads was generated; real logs have no truth.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Iterable, Optional

import pandas as pd

from pipeline.synth.generate import MANIFEST

TRUTH_COLUMNS = ["impression_id", "p_ctr", "p_cvr", "p_ctcvr", "would_convert"]


def truth_of_days(truth_path: str, days: Iterable[dt.date]) -> Optional[pd.DataFrame]:
    """``TRUTH_COLUMNS`` of the exposures of ``days``, indexed by impression; None when
    ``truth_path`` holds no generation (or none of those days)."""
    if not os.path.exists(os.path.join(truth_path, MANIFEST)):
        return None
    parts = [pd.read_parquet(os.path.join(truth_path, f"dt={d}"), columns=TRUTH_COLUMNS)
             for d in days if os.path.isdir(os.path.join(truth_path, f"dt={d}"))]
    return pd.concat(parts).set_index("impression_id") if parts else None
