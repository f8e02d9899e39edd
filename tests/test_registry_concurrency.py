"""Several kernels registering versions of one model at the same moment: every version
gets a number, 1..N, none lost, none twice — on SQLite, on PostgreSQL, and on Kubeflow
Model Registry (where numbers are claimed through a unique externalId)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import kfjupyter.registry as registry

from registry_race import PRELOAD, race
from registry_support import CONFIG, open_backend

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

PROCESSES = 8
EACH = 3


def racers(monkeypatch):
    """Processes forked from a forkserver that has kfjupyter and its store imported."""
    # the forkserver (started once) finds registry_race through PYTHONPATH: Python 3.11's
    # forkserver does not pass sys.path on to the modules it preloads
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    # an IPython shell made earlier in the session stands in for __main__ without a __spec__,
    # which multiprocessing reads when it starts a process
    main = sys.modules["__main__"]
    if not hasattr(main, "__spec__"):
        monkeypatch.setattr(main, "__spec__", None, raising=False)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "kubeflow-v1"])
def test_eight_processes_registering_at_once_get_versions_1_to_n_without_gap_or_duplicate(kind, request, monkeypatch, tmp_path):
    reg = open_backend(kind, request, monkeypatch)
    env = {k: os.environ[k] for k in ("KFJUPYTER_HOME", *CONFIG) if k in os.environ}
    ctx = racers(monkeypatch)
    procs = [ctx.Process(target=race, args=(env, CONFIG, str(tmp_path), i, EACH)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 90
    while len(list(tmp_path.glob("ready-*"))) < PROCESSES:
        assert time.monotonic() < deadline and all(p.exitcode in (None, 0) for p in procs), "racers did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()  # all at once
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"racer exited with {p.exitcode}"
    results = [json.loads((tmp_path / f"result-{i}.json").read_text()) for i in range(PROCESSES)]
    told = [n for r in results for n in r["numbers"]]
    total = PROCESSES * EACH
    assert sorted(told) == list(range(1, total + 1))

    versions = registry.list_versions("race", limit=None).items
    assert sorted(v.number for v in versions) == list(range(1, total + 1))
    assert Counter((v.custom_properties["proc"], v.custom_properties["k"]) for v in versions) == Counter(
        {(i, k): 1 for i in range(PROCESSES) for k in range(EACH)}
    )
    assert registry.get_model("race").latest_version == total
    shared = {v.artifact.sha256 for v in versions if v.custom_properties["k"] % 2 == 0}
    assert len(shared) == 1  # one artifact, stored once, however many raced to store it
    for v in versions:
        expected = b"shared weights" if v.custom_properties["k"] % 2 == 0 else f"weights of {v.custom_properties['proc']}/{v.custom_properties['k']}".encode()
        assert registry.artifact_file(v.ref, "weights.bin").read_bytes() == expected
    if reg.fake is not None:
        claims = [r for r in reg.fake.requests if r["method"] == "POST" and r["path"].endswith("/model_versions")]
        assert len(claims) >= total  # contested numbers were counted again, never duplicated
