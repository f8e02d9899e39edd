#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs pytest.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# the PostgreSQL variants of the registry tests must run, not skip
export KFJUPYTER_REQUIRE_POSTGRES=1
exec .venv/bin/python -m pytest "$@"
