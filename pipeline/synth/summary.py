"""A readable summary of a generation: label rates, oracle AUCs and dirt, from the truth."""
from __future__ import annotations

import pandas as pd

from pipeline.synth.generate import read_manifest
from pipeline.metrics import auc


def truth_summary(truth_path: str) -> str:
    """Rates and oracle AUCs (the best any model can reach on this data), then raw lines by
    what a correct pipeline must do with them."""
    truth = pd.read_parquet(truth_path)
    clicked = truth[truth["click"] == 1]
    rows = [
        ("exposures", f"{len(truth):,}"),
        ("CTR (click label)", f"{truth['click'].mean():.4f}"),
        ("CVR over clicks (conversion label)", f"{clicked['conversion'].mean():.4f}"),
        ("mean true pCVR, clicked / all exposures",
         f"{truth.loc[truth['clicked'] == 1, 'p_cvr'].mean():.4f} / {truth['p_cvr'].mean():.4f}"),
        ("oracle AUC: CTR", f"{auc(truth['click'], truth['p_ctr']):.4f}"),
        ("oracle AUC: CVR on clicks", f"{auc(clicked['conversion'], clicked['p_cvr']):.4f}"),
        ("oracle AUC: CTCVR", f"{auc(truth['conversion'], truth['p_ctcvr']):.4f}"),
        ("oracle AUC: CVR on all exposures (would-convert)", f"{auc(truth['would_convert'], truth['p_cvr']):.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    manifest = read_manifest(truth_path)
    lines.append("")
    lines.append("raw lines by what the pipeline must do with them:")
    for source, per_day in manifest["lines"].items():
        counts: dict[str, int] = {}
        for per_reason in per_day.values():
            for reason, n in per_reason.items():
                counts[reason] = counts.get(reason, 0) + n
        detail = ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {source:<12} {detail}")
    return "\n".join(lines)
