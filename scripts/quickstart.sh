#!/usr/bin/env bash
# The quickstart on a fresh machine: installs kfjupyter, then executes
# notebooks/quickstart.ipynb end to end on the local backend and says where its results are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/run_notebook.py notebooks/quickstart.ipynb
