"""Benchmark: the same scikit-learn model served by a plain KServe ModelServer script and
through ``kfjupyter.deploy``, hit by the same load generator on loopback; plus the canary
router's overhead.

Load generator: an asyncio/aiohttp client on 127.0.0.1 only, bounded in requests and time:
* throughput: ``--concurrency`` requests in flight for ``--slice`` seconds → requests/s;
* latency: an open loop at ``--rate`` requests/s for ``--slice`` seconds → p50, p99.
Targets take turns in short slices, ``--rounds`` times (the order flips every round), so
a noisy machine's drift falls on all of them alike; requests/s is the median of the
slices, p50/p99 are over all of a target's requests.

    .venv/bin/python bench/serving.py [--slice 1] [--rounds 10] [--concurrency 8] [--rate 100]

Last line: ``{"throughput_ratio": …, "p50_ms": …, "p99_ms_at_100rps": …, "router_overhead_p50_ms": …,
"transformer_ratio": …, "logging_ratio": …}`` (p50/p99 are kfjupyter's at ``--rate``; the
ratio is kfjupyter's requests/s over plain KServe's; ``transformer_ratio`` is the requests/s
of the same endpoint with a pass-through transformer from notebook code in front of its
predictor over that of the predictor alone, ``logging_ratio`` that of request logging on
(``log="all"``) over off; ``*_p99_ratio`` the same for p99: without ÷ with, so higher is better).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLAIN_SERVER = textwrap.dedent(
    """
    import sys
    port, path = int(sys.argv[1]), sys.argv[2]
    sys.argv = sys.argv[:1]
    import joblib
    import kserve
    from kserve.utils.utils import get_predict_input, get_predict_response

    class SKLearnModel(kserve.Model):
        def __init__(self, name):
            super().__init__(name)
            self.model = joblib.load(path)
            self.ready = True

        def predict(self, payload, headers=None):
            return get_predict_response(payload, self.model.predict(get_predict_input(payload)), self.name)

    kserve.ModelServer(http_port=port, workers=1, enable_grpc=False).start([SKLearnModel("iris")])
    """
)


def passthrough(x):
    """The bench's transformer (notebook code: captured as a cell's function)."""
    return x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 120) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
            conn.request("GET", "/v1/models/iris")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def _throughput(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int, headers: dict) -> float:
    import aiohttp

    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            nonlocal done, errors
            while time.perf_counter() < stop_at and done < max_requests:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} failed requests against {url}")
    return done / elapsed


async def _latency(url: str, body: bytes, rate: float, seconds: float, headers: dict) -> list[float]:
    """Open loop: one request every 1/rate s (not waiting for answers); latencies in ms."""
    import aiohttp

    n = int(rate * seconds)
    lat: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        # warm the connections
        for _ in range(5):
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()

        async def one():
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status} from {url}")
            lat.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    return lat


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice", type=float, default=1.0, help="seconds per target per round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-serving-"))
    os.environ["KFJUPYTER_HOME"] = str(tmp / "home")
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import kfjupyter

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    joblib.dump(model, tmp / "model.joblib")
    v = kfjupyter.register_model("iris", model, framework="sklearn")
    kfjupyter.registry.set_alias("iris", "production", v.number)
    body = json.dumps({"instances": X[:1].tolist()}).encode()

    plain_port = free_port()
    (tmp / "plain.py").write_text(PLAIN_SERVER)
    plain = subprocess.Popen([sys.executable, str(tmp / "plain.py"), str(plain_port), str(tmp / "model.joblib")],
                             stdout=open(tmp / "plain.log", "wb"), stderr=subprocess.STDOUT)
    endpoints = []
    try:
        wait_ready(f"http://127.0.0.1:{plain_port}")
        ep = kfjupyter.deploy("iris@production", name="iris")
        endpoints.append(ep)
        canary = kfjupyter.deploy("iris@production", name="iris-canary", canary="iris@production", canary_percent=50)
        endpoints.append(canary)
        transformed = kfjupyter.deploy("iris@production", name="iris-t", transformer=passthrough)
        endpoints.append(transformed)
        logged = kfjupyter.deploy("iris@production", name="iris-log", log="all")
        endpoints.append(logged)
        urls = {
            "plain": f"http://127.0.0.1:{plain_port}/v1/models/iris:predict",
            "kfjupyter": ep.predict_url,
            "router": canary.predict_url,
            "router_direct": f"{canary.info['servers'][0]['url']}/v1/models/iris-canary:predict",
            "transformer": transformed.predict_url,
            "logging": logged.predict_url,
        }
        # every target gets the same headers: kfjupyter's endpoints ask for their token
        # (Authorization: Bearer …), the plain server ignores it
        headers = {k: {"content-type": "application/json"} for k in urls}
        for key, target in (("kfjupyter", ep), ("router", canary), ("router_direct", canary), ("plain", ep),
                            ("transformer", transformed), ("logging", logged)):
            if target.token:
                headers[key]["authorization"] = f"Bearer {target.token}"
        # short alternating slices: a noisy machine's drift falls on every target alike
        rps = {k: [] for k in ("plain", "kfjupyter", "transformer", "logging")}
        lat = {k: [] for k in urls}
        for r in range(args.rounds):
            for key in list(rps) if r % 2 == 0 else list(reversed(rps)):
                rps[key].append(asyncio.run(_throughput(urls[key], body, args.concurrency, args.slice, args.max_requests,
                                                        headers[key])))
            keys = list(urls) if r % 2 == 0 else list(reversed(urls))
            for key in keys:
                lat[key] += asyncio.run(_latency(urls[key], body, args.rate, args.slice, headers[key]))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.0f} req/s" for k, v in rps.items())
                  + "; p50 so far " + ", ".join(f"{k} {pct(v, 0.5):.2f} ms" for k, v in lat.items()), flush=True)
    finally:
        for e in endpoints:
            e.undeploy()
        plain.terminate()
        plain.wait(timeout=30)

    fig = {
        **{f"{k}_rps": statistics.median(v) for k, v in rps.items()},
        **{f"{k}_p50_ms": pct(v, 0.5) for k, v in lat.items()},
        **{f"{k}_p99_ms": pct(v, 0.99) for k, v in lat.items()},
    }
    print(json.dumps({k: round(v, 3) for k, v in fig.items()}, indent=1))
    result = {
        "throughput_ratio": round(fig["kfjupyter_rps"] / fig["plain_rps"], 3),
        "p50_ms": round(fig["kfjupyter_p50_ms"], 3),
        "p99_ms_at_100rps": round(fig["kfjupyter_p99_ms"], 3),
        "router_overhead_p50_ms": round(fig["router_p50_ms"] - fig["router_direct_p50_ms"], 3),
        "transformer_ratio": round(fig["transformer_rps"] / fig["kfjupyter_rps"], 3),
        "transformer_p99_ratio": round(fig["kfjupyter_p99_ms"] / fig["transformer_p99_ms"], 3),
        "logging_ratio": round(fig["logging_rps"] / fig["kfjupyter_rps"], 3),
        "logging_p99_ratio": round(fig["kfjupyter_p99_ms"] / fig["logging_p99_ms"], 3),
        "transformer_rps": round(fig["transformer_rps"], 1),
        "logging_rps": round(fig["logging_rps"], 1),
        "plain_rps": round(fig["plain_rps"], 1),
        "kfjupyter_rps": round(fig["kfjupyter_rps"], 1),
        "plain_p50_ms": round(fig["plain_p50_ms"], 3),
        "plain_p99_ms_at_100rps": round(fig["plain_p99_ms"], 3),
        "rate": args.rate,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
