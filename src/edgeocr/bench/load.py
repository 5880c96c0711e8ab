"""Load test and memory soak of ``edgeocr serve`` on loopback; prints and writes measured figures.

    edgeocr study serve-load --clients 32 --duration 60 --out build/bench/serve-load.json
    edgeocr study serve-load --clients 32 --hostile-clients 8 --duration 60 --out build/bench/serve-hostile.json
    edgeocr study serve-load --clients 32 --hostile-clients 8 --soak 600 --out build/bench/serve-soak.json

It starts ``edgeocr serve`` as a subprocess on a free loopback port, waits for ``/health``, warms
it up (requests not counted), then runs ``--clients`` concurrent clients (asyncio + httpx, one
keep-alive connection each) that POST a bundled sample image to ``/v1/read`` back to back for
``--duration`` seconds (``--soak``: that many seconds instead). Every request's latency and status
is recorded; a request counts as an error unless it is a 200 whose read is the expected text
(the server's own first answer). The server process's resident memory (RSS, psutil) is sampled
every ``--rss-every`` seconds; the growth is reported from the baseline, the sample at
``--baseline-s`` seconds into the measured run (after warm-up), to the last sample, in %.

``--hostile-clients K``: K of the clients send hostile requests instead, back to back, cycling through
:data:`HOSTILE_MIX` (image bombs, a refused format, a batch over the request's pixel budget, JSON with
100,000 keys or nested 5,000 deep, YAML in a region's preprocess, a format with nested repeats, a
truncated PNG). Each must get its own 4xx status and error code; anything else (a 5xx, a timeout, a
200) counts as a hostile *failure*. The good clients' figures are reported apart, so the question
"do hostile requests hurt good ones?" reads off the errors and latencies of the good requests.

Clients and server share the machine: on a small CPU the client's own work is part of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError
from edgeocr.measure.resources import environment

DEFAULT_IMAGE = Path(__file__).resolve().parents[3] / "samples" / "lines" / "lot" / "00000000.png"


# --- the hostile mix ------------------------------------------------------------------------------


def _png(width: int, height: int, body: bytes | None = None) -> bytes:
    """A PNG of ``width`` x ``height`` gray pixels: all white, or only ``body`` as its compressed data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    if body is None:
        compressor = zlib.compressobj(9)
        row = b"\x00" + b"\xff" * width
        body = b"".join(compressor.compress(row * min(500, height - y)) for y in range(0, height, 500))
        body += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _json_body(body: bytes) -> dict:
    return {"content": body, "headers": {"content-type": "application/json"}}


def hostile_mix() -> list[tuple[str, str, dict, int, str]]:
    """The hostile requests of the load test: (name, path, httpx keywords, expected status, expected code)."""
    big = _png(7_000, 7_000)  # 49 MP, 48 kB
    laughs = "\n".join(
        [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else '"lol"'] * 9) + "]" for i in range(9)] + ["s: *l8"]
    )
    return [
        (
            "png header bomb",
            "/v1/read",
            {"files": {"image": ("b.png", _png(100_000, 100_000, b"x"), "image/png")}},
            413,
            "image_too_large",
        ),
        (
            "gif (refused format)",
            "/v1/read",
            {"files": {"image": ("b.gif", b"GIF89a\xff\xff\xff\xff" + bytes(20), "image/gif")}},
            400,
            "bad_image",
        ),
        (
            "16 x 49 MP batch",
            "/v1/read/batch",
            {"files": [("images", ("b.png", big, "image/png"))] * 16},
            413,
            "too_many_pixels",
        ),
        (
            "100,000 JSON keys",
            "/v1/read",
            _json_body(("{" + ", ".join(f'"k{i}": 0' for i in range(100_000)) + "}").encode()),
            413,
            "json_too_complex",
        ),
        (
            "JSON nested 5,000 deep",
            "/v1/read",
            _json_body(b'{"options": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
            413,
            "json_too_complex",
        ),
        (
            "YAML in a region's preprocess",
            "/v1/read",
            {"json": {"image": "aGVsbG8=", "options": {"regions": [{"rect": [0, 0, 4, 4], "preprocess": laughs}]}}},
            422,
            "invalid_options",
        ),
        (
            "nested repeats format",
            "/v1/read",
            {"json": {"image": "aGVsbG8=", "options": {"formats": ["((([A-Z]{64}){64}){64})"]}}},
            422,
            "invalid_options",
        ),
        ("truncated PNG", "/v1/read", {"files": {"image": ("t.png", big[:300], "image/png")}}, 400, "bad_image"),
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile_ms(values: list[float], q: float) -> float | None:
    return round(1000 * float(np.percentile(values, q)), 2) if values else None


class ServerProcess:
    """``edgeocr serve`` in a subprocess, its output in a log file; stopped on exit."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "edgeocr.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            *args,
        ]
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def wait_ready(self, httpx_module: Any, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EdgeOCRError(
                    f"edgeocr serve exited with {self.process.returncode}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            try:
                return httpx_module.get(self.url + "/health", timeout=2).json()
            except httpx_module.HTTPError:
                time.sleep(0.2)
        raise EdgeOCRError(f"edgeocr serve did not answer /health within {timeout_s:.0f} s (log: {self.log})")


async def _run_clients(
    httpx_module: Any,
    url: str,
    image: bytes,
    expected: str | None,
    clients: int,
    seconds: float,
    record: bool,
    pid: int | None,
    rss_every: float,
    hostile_clients: int = 0,
    mix: list[tuple[str, str, dict, int, str]] | None = None,
) -> dict:
    """``clients`` tasks posting back to back for ``seconds`` (``hostile_clients`` of them sending ``mix``);
    latencies, statuses and RSS samples."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    rss: list[tuple[float, int]] = []
    hostile: dict[str, dict[str, Any]] = {}
    cycle: Callable[[], tuple[str, str, dict, int, str]] = itertools.cycle(mix or []).__next__
    start = time.perf_counter()
    deadline = start + seconds
    limits = httpx_module.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: Any) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                response = await http.post(url + "/v1/read", files={"image": ("sample.png", image, "image/png")})
                if response.status_code != 200:
                    outcome = f"http {response.status_code}"
                else:
                    lines = response.json()["lines"]
                    read = lines[0]["text"] if lines else None
                    outcome = "ok" if read == expected else "wrong read"
            except (httpx_module.HTTPError, ValueError, KeyError, TypeError) as exc:  # no answer, or not ours
                outcome = type(exc).__name__
            elapsed = time.perf_counter() - began
            if record:
                if outcome == "ok":
                    latencies.append(elapsed)
                else:
                    failures[outcome] = failures.get(outcome, 0) + 1

    async def hostile_client(http: Any) -> None:
        while time.perf_counter() < deadline:
            name, path, request, status, code = cycle()
            began = time.perf_counter()
            try:
                response = await http.post(url + path, **request)
                got = f"{response.status_code} {response.json()['error']['code']}"
            except (httpx_module.HTTPError, ValueError, KeyError, TypeError) as exc:
                got = type(exc).__name__
            elapsed = time.perf_counter() - began
            if record:
                entry = hostile.setdefault(name, {"expected": f"{status} {code}", "count": 0, "failures": {}, "ms": []})
                entry["count"] += 1
                entry["ms"].append(elapsed)
                if got != entry["expected"]:
                    entry["failures"][got] = entry["failures"].get(got, 0) + 1

    async def sample_rss() -> None:
        process = psutil.Process(pid)
        while time.perf_counter() < deadline:
            rss.append((round(time.perf_counter() - start, 2), process.memory_info().rss))
            await asyncio.sleep(rss_every)
        rss.append((round(time.perf_counter() - start, 2), process.memory_info().rss))

    async with httpx_module.AsyncClient(limits=limits, timeout=60) as http:
        tasks = [client(http) for _ in range(clients - hostile_clients)]
        tasks += [hostile_client(http) for _ in range(hostile_clients)]
        if record and pid is not None:
            tasks.append(sample_rss())
        await asyncio.gather(*tasks)
    return {
        "wall_s": time.perf_counter() - start,
        "latencies": latencies,
        "failures": failures,
        "rss": rss,
        "hostile": hostile,
    }


def _rss_summary(samples: list[tuple[float, int]], baseline_s: float) -> dict:
    if not samples:
        return {}
    after = [s for s in samples if s[0] >= baseline_s]
    base_t, base = after[0] if after else samples[0]
    end_t, end = samples[-1]
    mib = 2**20
    return {
        "start_mb": round(samples[0][1] / mib, 1),
        "baseline_at_s": base_t,
        "baseline_mb": round(base / mib, 1),
        "end_at_s": end_t,
        "end_mb": round(end / mib, 1),
        "max_mb": round(max(r for _, r in samples) / mib, 1),
        "growth_percent": round(100 * (end - base) / base, 2),
        "samples": [[t, round(r / mib, 2)] for t, r in samples],
    }


def run_load(
    clients: int,
    seconds: float,
    image_path: Path,
    serve_args: list[str],
    warmup_s: float,
    rss_every: float,
    baseline_s: float,
    hostile_clients: int = 0,
) -> dict:
    """Start the server, warm it up, load it; the figures as a dict."""
    try:
        import httpx
    except ImportError as exc:
        raise EdgeOCRError(f"the load test needs httpx: pip install 'edgeocr[dev]' ({exc})") from None
    try:
        image = image_path.read_bytes()
    except OSError as exc:
        raise EdgeOCRError(
            f"{image_path}: cannot read the request image ({exc.strerror or exc}); pass --image"
        ) from None
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(serve_args, Path(tmp) / "serve.log") as server:
        health = server.wait_ready(httpx)
        first = httpx.post(server.url + "/v1/read", files={"image": ("sample.png", image, "image/png")}, timeout=60)
        if first.status_code != 200:
            raise EdgeOCRError(f"the server refused the sample image: {first.status_code} {first.text[:300]}")
        expected = first.json()["lines"][0]["text"] if first.json()["lines"] else None
        pid = server.process.pid if server.process else None
        mix = hostile_mix() if hostile_clients else None
        common = {"hostile_clients": hostile_clients, "mix": mix}
        asyncio.run(
            _run_clients(httpx, server.url, image, expected, clients, warmup_s, False, None, rss_every, **common)
        )
        run = asyncio.run(
            _run_clients(httpx, server.url, image, expected, clients, seconds, True, pid, rss_every, **common)
        )
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        log_tail = server.log.read_text(errors="replace")[-4000:]
    latencies, errors = run["latencies"], sum(run["failures"].values())
    hostile = {
        name: {
            "expected": entry["expected"],
            "count": entry["count"],
            "failures": entry["failures"],
            "p50_ms": _percentile_ms(entry["ms"], 50),
            "p99_ms": _percentile_ms(entry["ms"], 99),
        }
        for name, entry in run["hostile"].items()
    }
    return {
        "server_command": " ".join(["edgeocr", *server.command[3:]]),
        "image": str(image_path),
        "expected_text": expected,
        "clients": clients,
        "good_clients": clients - hostile_clients,
        "hostile_clients": hostile_clients,
        "duration_s": round(run["wall_s"], 2),
        "warmup_s": warmup_s,
        "requests": len(latencies) + errors,
        "ok": len(latencies),
        "errors": errors,
        "error_kinds": run["failures"],
        "requests_per_s": round(len(latencies) / run["wall_s"], 1),
        "latency_ms": {
            "p50": _percentile_ms(latencies, 50),
            "p90": _percentile_ms(latencies, 90),
            "p99": _percentile_ms(latencies, 99),
            "max": _percentile_ms(latencies, 100),
            "mean": round(1000 * float(np.mean(latencies)), 2) if latencies else None,
        },
        "rss": _rss_summary(run["rss"], baseline_s),
        "hostile": hostile,
        "hostile_requests": sum(entry["count"] for entry in hostile.values()),
        "hostile_failures": sum(sum(entry["failures"].values()) for entry in hostile.values()),
        "server_log_tail": log_tail,
        "server": {k: health.get(k) for k in ("model", "model_sha256", "mode", "limits")},
        "server_metrics_ok_requests": _metric_total(metrics, 'status="200"'),
        "environment": environment(),
    }


def _metric_total(text: str, label: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("edgeocr_http_requests_total{") and label in line and 'endpoint="/v1/read"' in line
    )


def format_summary(result: dict) -> str:
    lat, rss = result["latency_ms"], result["rss"]
    lines = [
        f"{result['good_clients']} good clients for {result['duration_s']:.0f} s on {result['image']}: "
        f"{result['requests']} requests, {result['errors']} errors {result['error_kinds'] or ''}".rstrip(),
        f"throughput {result['requests_per_s']} requests/s; latency p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
        f"p99 {lat['p99']} ms, max {lat['max']} ms",
    ]
    if result.get("hostile_clients"):
        lines.append(
            f"{result['hostile_clients']} hostile clients: {result['hostile_requests']} requests, "
            f"{result['hostile_failures']} not answered with their 4xx"
        )
        for name, entry in result["hostile"].items():
            failures = f", failures {entry['failures']}" if entry["failures"] else ""
            lines.append(
                f"  {name}: {entry['count']} x {entry['expected']}, p50 {entry['p50_ms']} ms, "
                f"p99 {entry['p99_ms']} ms{failures}"
            )
    if rss:
        lines.append(
            f"server RSS {rss['start_mb']} MB at start, {rss['baseline_mb']} MB at {rss['baseline_at_s']} s -> "
            f"{rss['end_mb']} MB at {rss['end_at_s']} s: {rss['growth_percent']:+.2f} % (max {rss['max_mb']} MB)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument(
        "--hostile-clients", type=int, default=0, help="how many of the clients send the hostile mix instead"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds of load")
    parser.add_argument("--soak", type=float, default=None, help="a soak: this many measured seconds instead")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of unmeasured load first")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="image every request sends")
    parser.add_argument("--threads", type=int, default=2, help="edgeocr serve --threads")
    parser.add_argument("--max-concurrent", type=int, default=1, help="edgeocr serve --max-concurrent")
    parser.add_argument("--model", default="default", help="edgeocr serve --model")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="RSS baseline: first sample after this")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    seconds = args.soak if args.soak is not None else args.duration
    if args.clients < 1 or seconds <= 0 or args.warmup < 0 or args.rss_every <= 0:
        parser.error("--clients must be at least 1; --duration/--soak and --rss-every positive; --warmup >= 0")
    if not 0 <= args.hostile_clients < args.clients:
        parser.error("--hostile-clients must be at least 0 and leave at least one good client")
    serve_args = ["--model", args.model, "--threads", str(args.threads), "--max-concurrent", str(args.max_concurrent)]
    try:
        result = run_load(
            args.clients,
            seconds,
            args.image,
            serve_args,
            args.warmup,
            args.rss_every,
            args.baseline_s,
            args.hostile_clients,
        )
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["kind"] = "soak" if args.soak is not None else "load"
    result["command"] = " ".join(["edgeocr study serve-load", *(sys.argv[1:] if argv is None else argv)])
    print(format_summary(result))
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
        print(f"figures: {args.out}")
    return 0 if result["errors"] == 0 and result["hostile_failures"] == 0 else 1
