#!/usr/bin/env bash
# Builds what a cluster runs (`make package`; docs/deployment.md):
#   dist/mtrank-<version>-py3-none-any.whl  the package
#   dist/mtrank-env.tar.gz                  a relocatable environment for
#       spark-submit --archives dist/mtrank-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python
#
# The archive cannot be packed from .venv: its editable install of this checkout (and the dev
# tools) would not travel. A fresh venv gets the built wheel and the pinned dependencies, with
# Horovod from the wheel .ci/bootstrap.sh built once into $MTRANK_CACHE/wheels, then venv-pack
# packs it. The dependencies' wheels (about 3 GB, most of it torch and its CUDA libraries) are
# downloaded once into $MTRANK_CACHE/wheelhouse and installed from there on later runs, since
# pip's own cache keeps nothing when the index's answers forbid caching.
# venv-pack does not copy the interpreter itself: the unpacked env runs the Python 3.11 found at
# the same path as here (pyvenv.cfg "home"), or at PYTHON_PREFIX when set (the cluster's prefix,
# e.g. /usr: then env/bin/python points at /usr/bin/python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
CACHE=${MTRANK_CACHE:-$HOME/.cache/mtrank}
ARCHIVE=${ARCHIVE:-dist/mtrank-env.tar.gz}
PYTHON_PREFIX=${PYTHON_PREFIX:-}
PY=.venv/bin/python  # made by .ci/bootstrap.sh (make env)

started=$(date +%s)
version=$($PY -c "import re; print(re.search(r'__version__ = \"([^\"]+)\"', open('pipeline/__init__.py').read()).group(1))")
# Horovod's pin, read from the one list of dependencies.
horovod_version=$($PY -c "import tomllib; print(next(d.split('==')[1] for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('horovod==')))")
horovod_wheel=$(ls "$CACHE"/wheels/horovod-"$horovod_version"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$horovod_wheel" ]; then
  echo "[package] no Horovod $horovod_version wheel in $CACHE/wheels: run 'make env' first" >&2
  exit 1
fi

echo "[package] wheel: mtrank $version"
mkdir -p dist
rm -f dist/mtrank-*.whl "$ARCHIVE"
$PY -m pip wheel -q --no-deps --no-build-isolation -w dist .
wheel=dist/mtrank-$version-py3-none-any.whl
test -f "$wheel"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[package] environment: $wheel + its pinned dependencies + $(basename "$horovod_wheel")"
"$PYTHON" -m venv "$work/env"
mkdir -p "$CACHE/wheelhouse"
# Installs from the wheelhouse alone; on a miss (first run, a changed pin) downloads what is
# missing into it, then installs from it.
install() {  # install [--upgrade] REQUIREMENT...
  local pip=("$work"/env/bin/python -m pip) opts=(-q --no-index --find-links "$CACHE/wheelhouse")
  if [ "$1" = --upgrade ]; then opts+=(--upgrade); shift; fi
  "${pip[@]}" install "${opts[@]}" "$@" 2>/dev/null && return
  echo "[package] downloading into $CACHE/wheelhouse the wheels of: $*"
  "${pip[@]}" download -q -d "$CACHE/wheelhouse" "$@"
  "${pip[@]}" install "${opts[@]}" "$@"
}
install --upgrade pip wheel "setuptools>=77"
install "$horovod_wheel" "$wheel"
"$work"/env/bin/python -m pip check

echo "[package] packing $ARCHIVE"
pack_args=(-p "$work/env" -o "$ARCHIVE" --compress-level "${COMPRESS_LEVEL:-1}")
if [ -n "$PYTHON_PREFIX" ]; then pack_args+=(--python-prefix "$PYTHON_PREFIX"); fi
.venv/bin/venv-pack --quiet "${pack_args[@]}"
chmod 644 "$ARCHIVE"
echo "[package] done in $(( $(date +%s) - started )) s: $wheel, $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
