"""Generator throughput: exposures/s at two sizes and the scaling ratio between them.

    .venv/bin/python bench/generate.py                 # 1M and 10M exposures (about 4 min)
    .venv/bin/python bench/generate.py --sizes 100000 1000000

Each size is generated over 5 days into a temporary folder (deleted afterwards). Prints one row
per size and, last, time(largest) / time(smallest) next to the ideal linear ratio.
"""
from __future__ import annotations

import shutil
import tempfile
import time

from scaling import run_sizes

from pipeline.config import load_config
from pipeline.synth.generate import generate

DAYS = 5


def measure(exposures: int) -> tuple[float, int]:
    root = tempfile.mkdtemp(prefix="bench-generate-")
    try:
        cfg = load_config(None, [f"storage.root={root}", f"synth.days={DAYS}",
                                 f"synth.exposures_per_day={exposures // DAYS}"])
        started = time.perf_counter()
        summary = generate(cfg, progress=False)
        return time.perf_counter() - started, summary.lines
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    run_sizes(measure, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
