#!/usr/bin/env bash
# Builds what a cluster runs (`make package`; docs/deployment.md), in two layers:
#   dist/mtrank-env.tar.gz                  the dependencies: a relocatable environment for
#       spark-submit --archives dist/mtrank-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python
#   dist/mtrank-<version>.zip               the code, for spark-submit --py-files
#   dist/mtrank-<version>-py3-none-any.whl  the same package as a wheel (pip install)
#
# The environment holds the pinned dependencies of pyproject.toml, with Horovod from the wheel
# .ci/bootstrap.sh built once into $MTRANK_CACHE/wheels, and not the project itself: it changes
# only when a pin does, so it is built once (about 12 min, 3.3 GB) into
# $MTRANK_CACHE/envs/mtrank-deps-<key>.tar.gz, the key a hash of what decides its content, and
# dist/mtrank-env.tar.gz is a hard link to it. With it cached, this script takes seconds.
#
# It cannot be packed from .venv: its editable install of this checkout (and the dev tools) would
# not travel. A fresh venv gets the pinned dependencies, then venv-pack packs it. Their wheels
# (about 3 GB, most of it torch and its CUDA libraries) are downloaded once into
# $MTRANK_CACHE/wheelhouse and installed from there on later builds, since pip's own cache keeps
# nothing when the index's answers forbid caching.
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
# The one list of dependencies, one a line; Horovod's pin from it.
mapfile -t deps < <($PY -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))")
horovod_version=$(printf '%s\n' "${deps[@]}" | sed -n 's/^horovod==//p')
horovod_wheel=$(ls "$CACHE"/wheels/horovod-"$horovod_version"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$horovod_wheel" ]; then
  echo "[package] no Horovod $horovod_version wheel in $CACHE/wheels: run 'make env' first" >&2
  exit 1
fi

mkdir -p dist "$CACHE/envs"
for stale in "$CACHE"/envs/.partial-*; do  # a build killed outright (SIGKILL) leaves its partial archive
  [ -e "$stale" ] || continue
  pid=${stale##*/.partial-}
  kill -0 "${pid%%-*}" 2>/dev/null || rm -f "$stale"
done
rm -f dist/mtrank-*.whl dist/mtrank-*.zip "$ARCHIVE"

# The code: the wheel, and the same file as a zip. A wheel is a zip with pipeline/ at its root,
# but Spark puts only .zip, .egg and .jar py-files on the executors' sys.path.
echo "[package] code: mtrank $version"
$PY -m pip wheel -q --no-deps --no-build-isolation -w dist .
wheel=dist/mtrank-$version-py3-none-any.whl
test -f "$wheel"
cp "$wheel" "dist/mtrank-$version.zip"

# The dependencies: what decides the environment's content is the dependency list, the Horovod
# wheel, the interpreter it is made with and the prefix its python points at.
key=$({ printf '%s\n' "${deps[@]}"; basename "$horovod_wheel"
        "$PYTHON" -c 'import sys; print(sys.version, sys.base_prefix)'; echo "prefix=$PYTHON_PREFIX"; } \
      | sha1sum | cut -c1-12)
env_archive=$CACHE/envs/mtrank-deps-$key.tar.gz
if [ -f "$env_archive" ]; then
  echo "[package] dependencies: $env_archive (cached)"
else
  work=$(mktemp -d)
  partial=$CACHE/envs/.partial-$$-$(basename "$env_archive")  # moved into place once complete
  trap 'rm -rf "$work" "$partial"' EXIT
  echo "[package] dependencies: building $env_archive from the pins + $(basename "$horovod_wheel")"
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
  install "$horovod_wheel" "${deps[@]}"
  "$work"/env/bin/python -m pip check

  pack_args=(-p "$work/env" -o "$partial" --compress-level "${COMPRESS_LEVEL:-1}")
  if [ -n "$PYTHON_PREFIX" ]; then pack_args+=(--python-prefix "$PYTHON_PREFIX"); fi
  .venv/bin/venv-pack --quiet "${pack_args[@]}"
  chmod 644 "$partial"
  mv "$partial" "$env_archive"
fi
# A hard link costs nothing; a copy where dist/ is on another file system than the cache.
ln "$env_archive" "$ARCHIVE" 2>/dev/null || cp "$env_archive" "$ARCHIVE"

echo "[package] done in $(( $(date +%s) - started )) s: $wheel, dist/mtrank-$version.zip," \
     "$ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
