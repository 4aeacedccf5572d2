#!/usr/bin/env bash
# Checks what `make package` built, as an executor sees it: the archive unpacked as ./env in an
# empty folder outside the checkout, its python in isolated mode (no PYTHONPATH, no current
# folder on sys.path), so nothing can come from this repository or .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=$(readlink -f "${ARCHIVE:-dist/mtrank-env.tar.gz}")

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/env"
tar -xzf "$ARCHIVE" -C "$work/env"
cd "$work"
env -u PYTHONPATH -u VIRTUAL_ENV ./env/bin/python -I -c '
import os, sys
import horovod, horovod.torch, pipeline, pyspark, torch
here = os.path.realpath("env")
for module in (pipeline, torch, horovod, pyspark):
    path = os.path.realpath(module.__file__)
    assert path.startswith(here + os.sep), f"{module.__name__} comes from {path}, not the archive"
print("[check-package] ok from the unpacked archive: pipeline", pipeline.__version__, "torch", torch.__version__,
      "horovod", horovod.__version__, "pyspark", pyspark.__version__, "python", sys.version.split()[0])
'
echo "[check-package] unpacked and imported in $(( $(date +%s) - started )) s"
