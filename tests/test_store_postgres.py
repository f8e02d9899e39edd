"""The workspace store on PostgreSQL: processes that open a fresh database at once (a
supervisor, its steps, the server, a second kernel …) all get their tables."""

from __future__ import annotations

import os
import subprocess
import sys

from postgres_support import shared_server

OPEN = """
import sys
from kfjupyter.store.workspace import get_workspace
sys.stdin.readline()              # all processes start, then open at the same moment
get_workspace().count_jobs()
print("ok")
"""


def test_parallel_first_opens_of_a_fresh_postgresql_database_all_succeed(workspace):
    for _ in range(3):  # each round on a fresh schema: the race happens only on the first open
        env = {**os.environ, "KFJUPYTER_DB_URL": shared_server().new_schema()}
        procs = [
            subprocess.Popen([sys.executable, "-c", OPEN], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(6)
        ]  # fmt: skip
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
        failures = [err for (out, err), p in zip(results, procs) if p.returncode != 0 or out.strip() != "ok"]
        assert not failures, failures[0][-2000:]
