"""Request logging and endpoint health of local endpoints.

Every model server (and transformer, explainer) of a local endpoint records each inference
request it answers in its own folder, as JSON lines written by :class:`RequestLog` (an ASGI
middleware inside the KServe server, behind the token check):

* ``requests.jsonl``: always, one short line per request (time, latency, status, verb):
  what :func:`endpoint_stats` reads (requests/s, error rate, p50/p95/p99 per version);
* ``payloads.jsonl``: with request logging on (``log="all" | "request" | "response"``,
  ``log_sample`` of the requests), the bodies as well: the local sink of KServe's logger,
  private to the user like every file of the workspace (0600; the servers run with
  kfjupyter's umask). :func:`logged_requests` reads them back.

The drift summary compares the logged inputs of a version with the sample of its training
data the version recorded in the registry (``register_model(..., training_sample=X)``),
feature by feature with two standard statistics: the population stability index (PSI,
numpy, over the training sample's deciles) and the two-sample Kolmogorov–Smirnov test
(``scipy.stats.ks_2samp``). A feature is flagged when both agree: PSI ≥ 0.2 (the usual
"significant shift") and KS p < 0.05.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

REQUESTS = "requests.jsonl"
PAYLOADS = "payloads.jsonl"
#: the lines of ``requests.jsonl`` read from its end for a window of stats
STATS_TAIL = 200_000
#: a feature drifted when PSI and KS agree (see the module docstring)
PSI_DRIFT = 0.2
KS_P_DRIFT = 0.05


def verb_of(path: str) -> str | None:
    """The inference verb of a request path (``predict``, ``explain``, ``infer``), or None."""
    if path.startswith("/v1/models/"):
        for verb in ("predict", "explain"):
            if path.endswith(f":{verb}"):
                return verb
    elif path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return None


class RequestLog:
    """ASGI middleware: one line per inference request in ``requests.jsonl``; with ``log``,
    the request and/or response bodies of a ``sample`` of them in ``payloads.jsonl``."""

    def __init__(self, app, folder: str, version: str, role: str = "predictor", log: str | None = None,
                 sample: float = 1.0):  # fmt: skip
        import orjson

        self.app = app
        self.dumps, self.loads = orjson.dumps, orjson.loads
        self.fragment = orjson.Fragment
        self.version, self.role = version, role
        self.keep_request = log in ("all", "request")
        self.keep_response = log in ("all", "response")
        self.sample = sample
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.stats_fd = os.open(Path(folder) / REQUESTS, flags, 0o600)
        self.payload_fd = os.open(Path(folder) / PAYLOADS, flags, 0o600) if log else None

    async def __call__(self, scope, receive, send):
        verb = verb_of(scope.get("path", "")) if scope["type"] == "http" else None
        if verb is None:
            return await self.app(scope, receive, send)
        keep = self.payload_fd is not None and (self.sample >= 1 or random.random() < self.sample)
        request: list[bytes] = []
        response: list[bytes] = []
        status = [500]
        json_type = [False]
        if keep and self.keep_request:
            inner_receive = receive

            async def receive():
                message = await inner_receive()
                if message["type"] == "http.request":
                    request.append(message.get("body", b""))
                return message

        started = time.time()
        t0 = time.perf_counter()
        written = [False]

        def record() -> None:
            # written before the last of the response goes out: whoever got the answer finds its line
            written[0] = True
            ms = round((time.perf_counter() - t0) * 1000, 3)
            line = {"t": started, "ms": ms, "status": status[0], "verb": verb, "version": self.version, "role": self.role}
            os.write(self.stats_fd, self.dumps(line) + b"\n")
            if keep:
                if self.keep_request:
                    line["request"] = self._body(b"".join(request), scope_json(scope))
                if self.keep_response:
                    line["response"] = self._body(b"".join(response), json_type[0])
                os.write(self.payload_fd, self.dumps(line) + b"\n")

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                json_type[0] = any(k == b"content-type" and v.startswith(b"application/json") for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                if keep and self.keep_response:
                    response.append(message.get("body", b""))
                if not message.get("more_body") and not written[0]:
                    record()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not written[0]:  # no answer went out (a crash, a client gone)
                record()

    def _body(self, raw: bytes, is_json: bool) -> Any:
        if is_json and raw:
            try:
                parsed = self.loads(raw)  # checked: a fragment goes into the line as it is
            except ValueError:
                pass
            else:
                return parsed if b"\n" in raw or b"\r" in raw else self.fragment(raw)
        return raw.decode("utf-8", errors="replace")


def scope_json(scope) -> bool:
    return any(k == b"content-type" and b"json" in v for k, v in scope.get("headers") or [])


# -- reading -------------------------------------------------------------------------------------
def _records(path: Path, tail: int | None = None) -> list[dict]:
    from ..runtime.logs import read_lines

    out = []
    for line in read_lines(path, tail):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def server_folders(info: dict) -> list[dict]:
    """The processes of a local endpoint that record requests: its servers, its transformer
    and its explainer (each ``{"role", "version", "dir"}``)."""
    out = [{"role": "predictor", "version": s["version"], "dir": s["dir"]} for s in info.get("servers") or []]
    for role in ("transformer", "explainer"):
        if info.get(role):
            out.append({"role": role, "version": info[role].get("version") or role, "dir": info[role]["dir"]})
    return out


def _percentile(values, q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(values, q)), 3) if len(values) else None


def summarise(records: list[dict], window: float, now: float) -> dict:
    """Requests/s, error rate and latency percentiles of ``records`` in the last ``window`` s."""
    recent = [r for r in records if r.get("t", 0) >= now - window]
    errors = sum(1 for r in recent if int(r.get("status", 500)) >= 400)
    latencies = [float(r["ms"]) for r in recent if "ms" in r]
    return {
        "requests": len(recent),
        "requests_per_s": round(len(recent) / window, 3) if window else None,
        "errors": errors,
        "error_rate": round(errors / len(recent), 4) if recent else 0.0,
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "p99_ms": _percentile(latencies, 99),
    }


def endpoint_stats(info: dict, versions: dict[str, int], window: float = 60.0) -> dict:
    """Per version (and per transformer/explainer) health over the last ``window`` seconds."""
    now = time.time()
    by_key: dict[str, list[dict]] = {}
    for proc in server_folders(info):
        key = proc["version"] if proc["role"] == "predictor" else proc["role"]
        by_key.setdefault(key, []).extend(_records(Path(proc["dir"]) / REQUESTS, STATS_TAIL))
    out = {}
    for key, records in by_key.items():
        out[key] = {**summarise(records, window, now), "role": "predictor" if key in versions else key}
        if key in versions:
            out[key]["traffic_percent"] = versions[key]
    return {"window_s": window, "time": now, "versions": out}


def logged_requests(info: dict, limit: int | None = 1000) -> list[dict]:
    """The logged requests/responses of every process of a local endpoint, oldest first."""
    out = []
    for proc in server_folders(info):
        out += _records(Path(proc["dir"]) / PAYLOADS, limit)
    out.sort(key=lambda r: r.get("t", 0))
    return out[-limit:] if limit else out


def logged_inputs(records: list[dict], version: str | None = None):
    """The input rows of the logged requests (V1 ``instances``, V2 first input) of one version."""
    import numpy as np

    rows = []
    for r in records:
        if r.get("role") != "predictor" or (version and r.get("version") != version) or int(r.get("status", 0)) != 200:
            continue
        body = r.get("request")
        if not isinstance(body, dict):
            continue
        if isinstance(body.get("instances"), list):
            rows.extend(body["instances"])
        elif isinstance(body.get("inputs"), list) and body["inputs"]:
            first = body["inputs"][0]
            rows.extend(np.asarray(first.get("data"), dtype=float).reshape(first.get("shape")).tolist())
    return rows


def drift_summary(training: Any, logged: Any, feature_names: list[str] | None = None) -> dict:
    """Feature by feature: PSI (numpy) and KS (scipy) of the logged inputs against the
    training sample; ``drifted``: the features where both flag a shift."""
    import numpy as np
    from scipy.stats import ks_2samp

    train = np.asarray(training, dtype=float)
    seen = np.asarray(logged, dtype=float)
    if train.ndim == 1:
        train = train[:, None]
    if seen.ndim == 1:
        seen = seen[:, None]
    if seen.size == 0:
        return {"samples": 0, "features": {}, "drifted": [], "method": "PSI (deciles) + KS two-sample"}
    if seen.shape[1] != train.shape[1]:
        return {"samples": len(seen), "features": {}, "drifted": [],
                "error": f"logged inputs have {seen.shape[1]} features, the training sample {train.shape[1]}"}  # fmt: skip
    names = feature_names or [f"x{i}" for i in range(train.shape[1])]
    features = {}
    for i, name in enumerate(names):
        psi = population_stability(train[:, i], seen[:, i])
        ks = ks_2samp(train[:, i], seen[:, i])
        features[name] = {"psi": round(psi, 4), "ks": round(float(ks.statistic), 4), "ks_pvalue": float(ks.pvalue),
                          "drifted": bool(psi >= PSI_DRIFT and ks.pvalue < KS_P_DRIFT),
                          "train_mean": round(float(train[:, i].mean()), 4), "logged_mean": round(float(seen[:, i].mean()), 4)}  # fmt: skip
    return {"samples": len(seen), "training_samples": len(train), "features": features,
            "drifted": [n for n, f in features.items() if f["drifted"]], "method": "PSI (deciles) + KS two-sample"}  # fmt: skip


def population_stability(expected, actual, bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected`` over ``expected``'s quantile bins."""
    import numpy as np

    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))
