"""The canary router: ``python -m kfjupyter.serving.router ROUTER_DIR``.

A small aiohttp proxy on 127.0.0.1 in front of an endpoint's model servers. Each request
goes to one upstream picked at random by weight (e.g. 90 % primary, 10 % canary); the
response carries ``x-kfjupyter-version`` naming the model version that answered. The
traffic split lives in ROUTER_DIR/router.json; the router re-reads it when it changes
(promote, rollback), and ``GET /kfjupyter/router`` says which generation it serves.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

CONFIG = "router.json"
HOST = "127.0.0.1"
VERSION_HEADER = "x-kfjupyter-version"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class Router:
    def __init__(self, path: Path):
        self.path = path
        self.mtime = 0.0
        self.config: dict = {}
        self.urls: list[str] = []
        self.versions: list[str] = []
        self.cum: list[float] = []
        self.reload()

    def reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self.mtime:
            return
        config = json.loads(self.path.read_text())
        ups = [u for u in config["upstreams"] if u["weight"] > 0]
        total, cum = 0.0, []
        for u in ups:
            total += u["weight"]
            cum.append(total)
        self.urls = [u["url"] for u in ups]
        self.versions = [u["version"] for u in ups]
        self.cum = [c / total for c in cum]
        self.config = config
        self.mtime = mtime

    def pick(self) -> int:
        if len(self.cum) == 1:
            return 0
        r = random.random()
        for i, c in enumerate(self.cum):
            if r < c:
                return i
        return len(self.cum) - 1


async def serve(router_dir: Path) -> None:
    import aiohttp
    from aiohttp import web

    router = Router(router_dir / CONFIG)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False
    )

    async def status(_request):
        return web.json_response({"generation": router.config.get("generation", 0), "upstreams": router.config.get("upstreams", [])})

    async def proxy(request: web.Request) -> web.StreamResponse:
        i = router.pick()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        try:
            async with session.request(
                request.method, router.urls[i] + str(request.rel_url),
                data=body, headers=headers,
            ) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
                out[VERSION_HEADER] = router.versions[i]
                return web.Response(status=upstream.status, body=payload, headers=out)
        except aiohttp.ClientError as exc:
            return web.json_response(
                {"error": f"version {router.versions[i]} did not answer: {exc}"}, status=502,
                headers={VERSION_HEADER: router.versions[i]},
            )

    async def watch():
        while True:
            await asyncio.sleep(0.1)
            try:
                router.reload()
            except (OSError, ValueError, KeyError):
                pass  # a half-written file: the next look reads it whole

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_get("/kfjupyter/router", status)
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, router.config["port"], reuse_address=False)
    await site.start()
    print(f"kfjupyter: canary router on {HOST}:{router.config['port']}", flush=True)
    task = asyncio.create_task(watch())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    await runner.cleanup()
    await session.close()


def main(argv: list[str] | None = None) -> None:
    router_dir = Path((argv or sys.argv[1:])[0])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(router_dir))


if __name__ == "__main__":
    main()
