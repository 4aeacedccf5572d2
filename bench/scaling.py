"""Shared by the benchmarks: time a job at several sizes, print rows/s and the scaling ratio."""
from __future__ import annotations

import argparse
from typing import Callable


def run_sizes(measure: Callable[[int], tuple[float, int]], description: str) -> None:
    """Parses ``--sizes``, calls ``measure(size) -> (seconds, raw lines)`` for each, and prints
    one row per size, then time(largest) / time(smallest) next to the linear ratio."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    sizes = sorted(parser.parse_args().sizes)
    seconds = {}
    print(f"{'exposures':>12} {'raw lines':>12} {'seconds':>9} {'exposures/s':>12}", flush=True)
    for size in sizes:
        seconds[size], lines = measure(size)
        print(f"{size:>12,} {lines:>12,} {seconds[size]:>9.1f} {size / seconds[size]:>12,.0f}", flush=True)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"scaling: time({large:,}) / time({small:,}) = {seconds[large] / seconds[small]:.2f} "
              f"(linear: {large / small:.2f})")
