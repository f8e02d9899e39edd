#!/usr/bin/env bash
# Creates .venv (once) and installs kfjupyter with its test dependencies into it.
# Sourced by scripts/quickstart.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
# torch pinned: 2.13.0 is a CPU wheel that installs from local disk; an unpinned torch
# would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# PostgreSQL server binaries for the registry tests that run against a real PostgreSQL
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing postgresql (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL's initdb is missing and this is not root: install postgresql" >&2
  fi
fi
# Chromium for the browser tests, node_modules and the labextension when stale, and the
# labextension linked into .venv (the `jupyter-builder develop . --overwrite` step)
bash scripts/setup-frontend.sh
