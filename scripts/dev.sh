#!/usr/bin/env bash
# One entry point for set-up and the project's jobs on a fresh Debian machine
# (Python, pip and apt only). Idempotent: re-running skips what is already in place.
#   bash scripts/dev.sh demo   set up, then run the main job on the built-in example
#   bash scripts/dev.sh test   set up, then ruff, mypy --strict and the whole pytest suite
#   bash scripts/dev.sh setup  set up only
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${IMGDIFF_VENV:-.venv}
PY=${PYTHON:-python3}

# System tools the tests and the rpm bindings need: dpkg-deb/rpmbuild build real packages,
# python3-rpm backs the PyPI `rpm` shim, zstd/xz/bzip2 make real compressed archives,
# umoci/skopeo write real OCI layouts (with whiteouts) and docker-save archives,
# db-util (db_load) writes a Berkeley DB rpmdb for the bdb_ro reader test, needrestart
# and debian-goodies (checkrestart) are the peers the stale tests and benchmarks compare with;
# libarchive-tools (bsdtar) writes archives the way most image pipelines do (sparse members,
# doubled xattr records), rsync is the differential oracle for random tree pairs, and the
# interpreter's own testsuite package carries CPython's tar test data (testtar.tar);
# ostree makes the static deltas `python -m benchmarks report` compares imgdiff's with.
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
APT_PKGS=(python3-rpm rpm db-util dpkg-dev zstd xz-utils bzip2 gcc binutils attr umoci skopeo
          needrestart debian-goodies libarchive-tools rsync ostree "libpython$PYVER-testsuite")

need_apt=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp="$VENV/.imgdiff-setup"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev,fleet,notebook]'
  touch "$stamp"
fi

case "${1:-test}" in
  setup) ;;
  demo) shift; exec "$VENV/bin/imgdiff" demo "$@" ;;
  test)
    shift || true
    "$VENV/bin/ruff" check imgdiff tests benchmarks
    "$VENV/bin/ruff" format --check imgdiff tests benchmarks
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest -n 2 -q "$@"
    ;;
  *) echo "usage: bash scripts/dev.sh [setup|demo|test]" >&2; exit 2 ;;
esac
