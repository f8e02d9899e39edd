"""The canary router: ``python -m kfjupyter.serving.router ROUTER_DIR``.

A small HTTP/1.1 proxy (asyncio streams) on 127.0.0.1 in front of an endpoint's model servers. Each request
goes to one upstream picked at random by weight (e.g. 90 % primary, 10 % canary); the
response carries ``x-kfjupyter-version`` naming the model version that answered. The
traffic split lives in ROUTER_DIR/router.json; the router re-reads it when it changes
(promote, rollback), and ``GET /kfjupyter/router`` says which generation it serves. Every
request needs the endpoint's token (``Authorization: Bearer TOKEN``, also in router.json):
without it the answer is 401 and nothing is forwarded.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import sys
from pathlib import Path

CONFIG = "router.json"
HOST = "127.0.0.1"
VERSION_HEADER = "x-kfjupyter-version"


class Router:
    def __init__(self, path: Path):
        self.path = path
        self.mtime = 0.0
        self.config: dict = {}
        self.urls: list[str] = []
        self.versions: list[str] = []
        self.cum: list[float] = []
        self.expected: bytes | None = None
        self.explainer: str | None = None
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
        self.expected = f"bearer {config['token']}".encode()
        self.urls = [u["url"] for u in ups]
        self.versions = [u["version"] for u in ups]
        self.cum = [c / total for c in cum]
        self.explainer = config.get("explainer")
        self.config = config
        self.mtime = mtime

    def allowed(self, lower_head: bytes) -> bool:
        """Whether the request's head (lowercased) carries the token."""
        i = lower_head.find(b"\nauthorization:")
        if i < 0 or self.expected is None:
            return False
        end = lower_head.find(b"\r", i + 1)
        return hmac.compare_digest(lower_head[i + 16 : end].strip(), self.expected)

    def pick(self) -> int:
        if len(self.cum) == 1:
            return 0
        r = random.random()
        for i, c in enumerate(self.cum):
            if r < c:
                return i
        return len(self.cum) - 1


class Upstream:
    """One kept-alive connection to one model server."""

    def __init__(self, url: str):
        host, _, port = url.split("//", 1)[1].partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[bytes, bytes]:
        """Send a whole request; return (response head without its final CRLF, body)."""
        for attempt in (0, 1):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                body = await _read_body(self.reader, head)
                if b"\nconnection: close" in head.lower():
                    self.close()
                return head[:-2], body
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed a kept-alive connection: once more, fresh
                if attempt:
                    raise
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body as :func:`_read_body` keeps it (framing and all)."""
    out, i = [], 0
    while True:
        end = data.index(b"\r\n", i)
        size = int(data[i:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        i = end + 2 + size + 2


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lower = head.lower()
    i = lower.find(b"\ncontent-length:")
    if i >= 0:
        n = int(lower[i + 16 : lower.index(b"\r\n", i + 1)].strip())
        return await reader.readexactly(n) if n else b""
    if b"\ntransfer-encoding: chunked" in lower:
        chunks = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            chunks += size_line + data
            if size == 0:
                return chunks
    return b""


async def serve(router_dir: Path) -> None:
    """A minimal HTTP/1.1 proxy on asyncio streams (keep-alive both ways): the hop costs
    a fraction of a millisecond, where a general client/server pair costs a whole one."""
    import signal

    router = Router(router_dir / CONFIG)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstreams: dict[str, Upstream] = {}
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return
                lower = head.lower()
                if b"\nexpect: 100-continue" in lower:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, head)
                closing = b"\nconnection: close" in lower or head.startswith(b"HTTP/1.0")
                if not router.allowed(lower):
                    data = b'{"error": "this endpoint needs its token: Authorization: Bearer TOKEN"}'
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nwww-authenticate: Bearer\r\n"
                                 b"content-length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
                elif head.startswith(b"GET /kfjupyter/router "):
                    data = json.dumps({"generation": router.config.get("generation", 0),
                                       "upstreams": router.config.get("upstreams", [])}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(data)).encode() + b"\r\n\r\n" + data)
                else:
                    if router.explainer and b":explain " in head[: head.find(b"\r\n")]:
                        url, version = router.explainer, "explainer"  # KServe's ingress: :explain → the explainer
                    else:
                        i = router.pick()
                        url, version = router.urls[i], router.versions[i]
                    up = upstreams.get(url)
                    if up is None:
                        up = upstreams[url] = Upstream(url)
                    tag = f"{VERSION_HEADER}: {version}\r\n\r\n".encode()
                    try:
                        rhead, rbody = await up.exchange(head + body)
                        writer.write(rhead + tag + rbody)
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        data = json.dumps({"error": f"version {version} did not answer: {exc}"}).encode()
                        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: "
                                     + str(len(data)).encode() + b"\r\n" + tag + data)
                await writer.drain()
                if closing:
                    return
        finally:
            for up in upstreams.values():
                up.close()
            writer.close()

    async def watch():
        while True:
            await asyncio.sleep(0.1)
            try:
                router.reload()
            except (OSError, ValueError, KeyError):
                pass  # a half-written file: the next look reads it whole

    server = await asyncio.start_server(handle, HOST, router.config["port"], limit=1 << 16)
    print(f"kfjupyter: canary router on {HOST}:{router.config['port']}", flush=True)
    task = asyncio.create_task(watch())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    server.close()


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
