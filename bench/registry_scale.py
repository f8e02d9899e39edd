"""The registry at scale: list and search latency with 10,000 versions across 500 models.

Seeds a fresh workspace (SQLite by default, ``--db-url`` for PostgreSQL) with 500
registered models of 20 versions each — metrics, parameters, a framework, an artifact,
aliases and their history, as registrations leave them; seeded in bulk into the same
tables (registering 10,000 versions one by one would time the seeding, not the
browsing) — then runs the queries the Models panel makes, mixed, and reports their
latency: the first page of models, a page further on, text search, framework and alias
filters, a model's versions, versions by metric range sorted by a metric. Each timed
call includes turning the page into JSON, as a REST handler does.

``--via python`` (default) calls ``kfjupyter.registry``'s list/search functions;
``--via rest --url … [--token …]`` sends the same queries to the server extension's
REST API (``REST_ROUTES`` below: ``server_ext/openapi.yaml``, tag ``models``).

Prints a table, then as its last line one JSON object:
``{"p95_ms": …, "versions": 10000, "models": 500, "via": "python", "db": "sqlite", …}``

    python bench/registry_scale.py [--models 500] [--versions-per-model 20] [--rounds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

FRAMEWORKS = ("sklearn", "pytorch", "onnx", "xgboost", "custom")

#: the REST API's routes for the same queries (query parameters as in the Python API)
REST_ROUTES = {
    "models": "/kfjupyter/api/v1/models",
    "versions": "/kfjupyter/api/v1/models/{model}/versions",
    "search": "/kfjupyter/api/v1/model-versions",
}


# -- clients ---------------------------------------------------------------------------------


class PythonClient:
    """The registry's Python API (what the REST handlers call)."""

    name = "python"

    def __init__(self) -> None:
        import kfjupyter.registry as registry

        self.registry = registry

    def list_models(self, **params: Any) -> dict:
        return self.registry.list_models(**params).to_dict()

    def list_versions(self, model: str, **params: Any) -> dict:
        return self.registry.list_versions(model, **params).to_dict()

    def search_versions(self, **params: Any) -> dict:
        metrics = params.pop("metrics", None)
        if metrics:
            from kfjupyter.registry.entities import parse_metric_filters

            params["metrics"] = parse_metric_filters(metrics)
        return self.registry.search_versions(**params).to_dict()


class RestClient:
    """The same queries over HTTP (the server extension's model routes)."""

    name = "rest"

    def __init__(self, url: str, token: str | None) -> None:
        import requests

        self.url = url.rstrip("/")
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"token {token}"

    def _get(self, route: str, params: dict) -> dict:
        # the routes' spelling: ``q`` for the text, one ``metric`` per range, booleans as true/false
        names = {"query": "q", "metrics": "metric"}
        query = {
            names.get(k, k): (("true" if v else "false") if isinstance(v, bool) else v)
            for k, v in params.items()
            if v is not None
        }
        resp = self.http.get(self.url + route, params=query, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def list_models(self, **params: Any) -> dict:
        return self._get(REST_ROUTES["models"], params)

    def list_versions(self, model: str, **params: Any) -> dict:
        return self._get(REST_ROUTES["versions"].format(model=model), params)

    def search_versions(self, **params: Any) -> dict:
        return self._get(REST_ROUTES["search"], params)


# -- seeding ---------------------------------------------------------------------------------


def seed(models: int, per_model: int, rng: random.Random) -> int:
    """Fill the workspace's registry tables as ``models × per_model`` registrations would."""
    from sqlalchemy import insert

    import kfjupyter.registry as registry
    from kfjupyter.registry.tables import (
        AliasEventRow,
        AliasRow,
        ModelArtifactRow,
        ModelMetricRow,
        ModelVersionRow,
        RegisteredModelRow,
    )
    from kfjupyter.store import get_workspace

    reg = registry.get_registry()
    # one real artifact, stored once (content-addressed), that every seeded version points at
    with reg.store.stage() as stage:
        (stage / "model.pkl").write_bytes(b"seeded model")
        stored = reg.store.commit(stage)
    ws = get_workspace()
    t0 = datetime.now(timezone.utc) - timedelta(days=30)
    model_rows, version_rows, metric_rows, artifact_rows, alias_rows, event_rows = [], [], [], [], [], []
    vid = 0
    for m in range(1, models + 1):
        created = t0 + timedelta(minutes=m)
        model_rows.append(
            dict(id=m, name=f"model-{m:03d}", description=f"benchmark model {m} ({FRAMEWORKS[m % 5]})", owner="bench",
                 state="LIVE" if m % 50 else "ARCHIVED", latest_version=per_model, custom_properties={"team": f"team-{m % 7}"},
                 created_at=created, updated_at=created + timedelta(minutes=per_model))
        )
        for n in range(1, per_model + 1):
            vid += 1
            at = created + timedelta(seconds=n)
            framework = FRAMEWORKS[(m + n) % 5]
            version_rows.append(
                dict(id=vid, model_id=m, number=n, name=str(n) if n % 5 else f"v{n // 5}.0", state="LIVE" if n % 9 else "ARCHIVED",
                     framework=framework, framework_version="1.0", description=f"run {n} of model {m}", author="bench",
                     params={"lr": rng.choice([0.1, 0.01, 0.001]), "depth": rng.randint(2, 12)}, custom_properties={},
                     lineage={"job_id": f"job-{m}-{n}", "job_kind": "train", "notebook": "bench.ipynb"},
                     job_id=f"job-{m}-{n}", created_at=at, updated_at=at)
            )
            accuracy = round(rng.uniform(0.5, 1.0), 4)
            metric_rows += [dict(version_id=vid, key="accuracy", value=accuracy), dict(version_id=vid, key="loss", value=round(1 - accuracy, 4))]
            artifact_rows.append(
                dict(version_id=vid, name="model", uri=stored.uri, sha256=stored.sha256, size=stored.size, format="custom",
                     format_version=None, main_file="model.pkl", state="LIVE", properties={}, created_at=at)
            )
        live = [v for v in version_rows[-per_model:] if v["state"] == "LIVE"]
        production, staging = live[-2]["id"], live[-1]["id"]
        alias_rows.append(dict(model_id=m, alias="production", version_id=production, updated_by="bench", updated_at=created))
        event_rows.append(dict(model_id=m, alias="production", from_version=None, to_version=live[-2]["number"], who="bench", at=created))
        if m % 2:
            alias_rows.append(dict(model_id=m, alias="staging", version_id=staging, updated_by="bench", updated_at=created))
            event_rows.append(dict(model_id=m, alias="staging", from_version=None, to_version=live[-1]["number"], who="bench", at=created))
    with ws.session() as s, s.begin():
        for table, rows in (
            (RegisteredModelRow, model_rows),
            (ModelVersionRow, version_rows),
            (ModelMetricRow, metric_rows),
            (ModelArtifactRow, artifact_rows),
            (AliasRow, alias_rows),
            (AliasEventRow, event_rows),
        ):
            for i in range(0, len(rows), 2000):
                s.execute(insert(table), rows[i:i + 2000])
    if ws.engine.dialect.name == "postgresql":
        with ws.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return vid


# -- the workload ------------------------------------------------------------------------------


def workload(models: int, rng: random.Random) -> list[tuple[str, Callable[[Any], dict]]]:
    """The panel's queries: (kind, call(client))."""
    def name() -> str:
        return f"model-{rng.randint(1, models):03d}"

    return [
        ("models: first page", lambda c: c.list_models(limit=50)),
        ("models: page further on", lambda c: c.list_models(limit=50, offset=rng.randrange(0, models, 50))),
        ("models: by name, A-Z", lambda c: c.list_models(order_by="name", descending=False, limit=50, offset=100)),
        ("models: text search", lambda c: c.list_models(query=name()[:-1], limit=50)),
        ("models: framework", lambda c: c.list_models(framework=rng.choice(FRAMEWORKS), limit=50)),
        ("models: alias", lambda c: c.list_models(alias="staging", limit=50)),
        ("versions of a model", lambda c: c.list_versions(name(), limit=50)),
        ("search: text", lambda c: c.search_versions(query=name(), limit=50)),
        ("search: metric range by metric", lambda c: c.search_versions(metrics=["accuracy>=0.95"], order_by="metric:accuracy", limit=50)),
        ("search: framework + alias", lambda c: c.search_versions(framework=rng.choice(FRAMEWORKS), alias="production", limit=50)),
        ("search: newest, page 3", lambda c: c.search_versions(limit=50, offset=100)),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--versions-per-model", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40, help="times each query kind runs (after one warm-up)")
    parser.add_argument("--db-url", default=None, help="KFJUPYTER_DB_URL for the workspace (default: a SQLite file)")
    parser.add_argument("--home", default=None, help="KFJUPYTER_HOME (default: a new temporary folder)")
    parser.add_argument("--via", choices=("python", "rest"), default="python")
    parser.add_argument("--url", default=None, help="the Jupyter server's base URL (with --via rest)")
    parser.add_argument("--token", default=None, help="the Jupyter server's token (with --via rest)")
    parser.add_argument("--no-seed", action="store_true", help="the workspace is already seeded")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="kfjupyter-bench-"))
    os.environ["KFJUPYTER_HOME"] = str(home)
    for name in ("KFJUPYTER_MODEL_REGISTRY_URL", "KFJUPYTER_ARTIFACT_URI"):
        os.environ.pop(name, None)
    if args.db_url:
        os.environ["KFJUPYTER_DB_URL"] = args.db_url
    else:
        os.environ.pop("KFJUPYTER_DB_URL", None)
    rng = random.Random(args.seed)

    from kfjupyter.store import get_workspace

    db = get_workspace().engine.dialect.name
    versions = args.models * args.versions_per_model
    if not args.no_seed:
        t = time.perf_counter()
        versions = seed(args.models, args.versions_per_model, rng)
        print(f"seeded {versions} versions of {args.models} models into {db} in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    if args.via == "rest":
        if not args.url:
            parser.error("--via rest needs --url (the Jupyter server running kfjupyter_server)")
        client: Any = RestClient(args.url, args.token)
    else:
        client = PythonClient()

    queries = workload(args.models, rng)
    for _, call in queries:  # warm-up: connections, caches, query plans
        call(client)
    timings: dict[str, list[float]] = {kind: [] for kind, _ in queries}
    order = [q for q in queries for _ in range(args.rounds)]
    rng.shuffle(order)
    for kind, call in order:
        start = time.perf_counter()
        page = call(client)
        timings[kind].append((time.perf_counter() - start) * 1000)
        assert "items" in page

    everything = [t for ts in timings.values() for t in ts]
    width = max(len(k) for k in timings)
    print(f"{'query'.ljust(width)}  {'p50 ms':>8}  {'p95 ms':>8}  {'max ms':>8}")
    for kind, ts in timings.items():
        print(f"{kind.ljust(width)}  {statistics.median(ts):8.1f}  {percentile(ts, 95):8.1f}  {max(ts):8.1f}")
    p95 = percentile(everything, 95)
    print(f"{'all'.ljust(width)}  {statistics.median(everything):8.1f}  {p95:8.1f}  {max(everything):8.1f}")
    print(json.dumps({
        "p95_ms": round(p95, 2),
        "versions": versions,
        "models": args.models,
        "p50_ms": round(statistics.median(everything), 2),
        "max_ms": round(max(everything), 2),
        "queries": len(everything),
        "via": client.name,
        "db": db,
        "per_query_p95_ms": {k: round(percentile(ts, 95), 2) for k, ts in timings.items()},
    }))


if __name__ == "__main__":
    main()
