"""A racer of the concurrency test: one process registering versions of the model ``race``
at the same moment as others. Only the standard library and kfjupyter here: racers are
forked from a forkserver that preloaded kfjupyter's registry (a fresh interpreter per
racer would spend seconds importing before the race)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import kfjupyter.registry as registry

#: what the forkserver imports once for all racers
PRELOAD = [
    "registry_race",
    "kfjupyter.registry.local",
    "kfjupyter.registry.remote",
    "kfjupyter.store.workspace",
    "sqlalchemy.orm",
    "requests",
]


def race(env: dict, config: tuple, scratch: str, me: int, each: int) -> None:
    for name in config:
        os.environ.pop(name, None)
    os.environ.update(env)
    registry.get_registry()  # open the store first: race the registrations, not the start-up
    folder = Path(scratch)
    (folder / f"ready-{me}").touch()
    while not (folder / "go").exists():
        time.sleep(0.002)
    start = time.monotonic()
    numbers = []
    for k in range(each):
        # even rounds register the same bytes in every process: concurrent commits of one artifact
        data = b"shared weights" if k % 2 == 0 else f"weights of {me}/{k}".encode()
        path = folder / f"{me}-{k}" / "weights.bin"
        path.parent.mkdir()
        path.write_bytes(data)
        v = registry.register_model("race", path, framework="custom", custom_properties={"proc": me, "k": k})
        numbers.append(v.number)
    (folder / f"result-{me}.json").write_text(json.dumps({"numbers": numbers, "seconds": time.monotonic() - start}))
