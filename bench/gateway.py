"""Gateway benchmark: direct-to-upstream vs through the portal's /v1 gateway (vs LiteLLM).

Not part of the test suite. Runs everything on loopback: a fast async OpenAI-compatible
upstream, the portal's ASGI server (uvicorn, 2 workers, uvloop, the portal's httptools
protocol) with keys, rate limiting, metering and Prometheus metrics all on, Debian's `wrk` as
load generator and, when installed, LiteLLM's proxy (master key only, offline mode) in front of
the same upstream. It prints a table and writes JSON to bench/results/.

    .venv/bin/python bench/gateway.py [--duration 8] [--concurrency 1,16,64] [--no-litellm]
                                      [--workers 2] [--no-metrics]

"req/s per core" is requests divided by the CPU seconds the gateway's processes spent on
them (from /proc): how many requests one core of gateway serves when it is saturated — the
figure to size replicas with (README "Sizing the gateway").

Uses PostgreSQL (BENCH_DATABASE_URL, default database portal_bench_gateway on 127.0.0.1) and Redis
(BENCH_REDIS_URL, default db 12). LiteLLM is looked for in var/litellm-venv (create it with
`python3 -m venv var/litellm-venv && var/litellm-venv/bin/pip install 'litellm[proxy]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL",
                              "postgres://postgres:postgres@127.0.0.1:5432/portal_bench_gateway")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
ENV = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "DEBUG": "false",
       "SECRET_KEY": "bench-only-secret-key-0123456789abcdef", "PORTAL_IGNORE_DOTENV": "1",
       "STATIC_MANIFEST": "false", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
       "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleSE="}
SIGNING_KEY = ROOT / "var/bench-platform-signing-key.pem"
ENV["PLATFORM_SIGNING_KEY_FILE"] = str(SIGNING_KEY)
os.environ.update({k: v for k, v in ENV.items() if k != "PATH"})
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"

CHAT_BODY = {"model": "chat-small", "messages": [{"role": "user", "content": "hello there"}]}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"errors_status\\": %%d, " ..
    "\\"errors_connect\\": %%d, \\"errors_timeout\\": %%d, \\"errors_read\\": %%d, " ..
    "\\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.timeout, summary.errors.read, latency:percentile(50),
    latency:percentile(99)))
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk")


def prepare_database() -> None:
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=ENV, check=True)


def prepare_data(upstream: str) -> str:
    """A tenant, a served chat model and a key with (high) limits, so every check runs."""
    import django

    django.setup()
    import redis

    from deployments.models import Deployment
    from deployments.services import external_endpoint_register
    from gateway.services import apikey_create
    from models_catalog.models import Model
    from models_catalog.services import model_create, price_set
    from tenants.models import Tenant
    from tenants.services import tenant_create

    redis.Redis.from_url(REDIS_URL).flushdb()
    actor = "system:bench"
    tenant = Tenant.objects.filter(slug="bench").first() or tenant_create(
        actor=actor, slug="bench", name="Bench", contact_email="bench@example.test",
        jurisdiction="DE", max_api_keys=1000, rate_limit_rpm=2_000_000_000,
        rate_limit_tpm=2_000_000_000)
    model = Model.objects.filter(slug="chat-small").first()
    if model is None:
        model = model_create(actor=actor, slug="chat-small", name="Chat Small", task="chat")
        from decimal import Decimal

        price_set(actor=actor, model=model, input_per_million=Decimal("0.5"),
                  output_per_million=Decimal("1.5"))
    Deployment.objects.filter(model=model).delete()
    external_endpoint_register(actor=actor, model=model, base_url=upstream)
    _key, token = apikey_create(actor=actor, tenant=tenant, name=f"bench {time.time()}",
                                rpm_limit=2_000_000_000, tpm_limit=2_000_000_000)
    return token


def process_tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_wrk(wrk: str, url: str, token: str, concurrency: int, duration: int, stream: bool,
            server_pid: int | None) -> dict:
    body = dict(CHAT_BODY, stream=True) if stream else CHAT_BODY
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"body": json.dumps(body), "token": token})
    cpu_before = process_tree_cpu_seconds(server_pid) if server_pid else 0.0
    output = subprocess.run(
        [wrk, "-t", str(min(2, concurrency)), "-c", str(concurrency), "-d", f"{duration}s",
         "--timeout", "10s", "-s", script.name, url], capture_output=True, text=True,
        check=True).stdout
    cpu = process_tree_cpu_seconds(server_pid) - cpu_before if server_pid else None
    os.unlink(script.name)
    result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    errors = sum(result[k] for k in result if k.startswith("errors_"))
    ok = result["requests"] - result["errors_status"]
    return {
        "concurrency": concurrency, "stream": stream, "requests": result["requests"],
        "succeeded": ok, "errors": errors,
        "rps": round(result["requests"] / (result["duration_us"] / 1e6), 1),
        "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "cpu_ms_per_request": round(cpu * 1000 / result["requests"], 3) if cpu else None,
        "rps_per_core": round(result["requests"] / cpu) if cpu else None,
    }


async def time_to_first_token(url: str, token: str, samples: int) -> float:
    import aiohttp

    body = dict(CHAT_BODY, stream=True)
    timings = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            started = time.perf_counter()
            async with session.post(url, json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                async for _chunk in response.content.iter_any():
                    timings.append((time.perf_counter() - started) * 1000)
                    break
                await response.read()
    return round(statistics.median(timings), 3)


def start(command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kwargs)


def stop(process: subprocess.Popen) -> None:
    if process.returncode is not None:
        return  # stopped already
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def start_litellm(upstream: str) -> tuple[subprocess.Popen, int] | None:
    binary = ROOT / "var/litellm-venv/bin/litellm"
    if not binary.exists():
        return None
    port = free_port()
    config = Path(tempfile.mkdtemp()) / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: chat-small\n    litellm_params:\n"
        f"      model: openai/chat-small\n      api_base: {upstream}\n      api_key: none\n")
    env = {**os.environ, "LITELLM_OFFLINE_MODE": "true", "LITELLM_MASTER_KEY": "sk-bench",
           "LITELLM_LOG": "ERROR", "DATABASE_URL": ""}
    env.pop("DATABASE_URL")
    process = start([str(binary), "--config", str(config), "--port", str(port),
                     "--num_workers", "2"], env=env)
    wait_for_port(port, timeout=120)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-metrics", action="store_true",
                        help="leave the metrics port off (to measure what metrics cost)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    wrk = ensure_wrk()
    if not SIGNING_KEY.exists():
        from portal.signing import write_new_key

        SIGNING_KEY.parent.mkdir(exist_ok=True)
        write_new_key(str(SIGNING_KEY))
    prepare_database()

    started: list[subprocess.Popen] = []  # stopped however the run ends
    try:
        run(args, levels, wrk, started)
    finally:
        for process in started:
            stop(process)


def run(args, levels: list[int], wrk: str, started: list[subprocess.Popen]) -> None:
    upstream_port = free_port()
    upstream = start([sys.executable, "tests/support/openai_upstream.py", "--port",
                      str(upstream_port)], cwd=ROOT)
    started.append(upstream)
    wait_for_port(upstream_port)
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    token = prepare_data(upstream_url)

    gateway_port = free_port()
    gateway_env, metrics_url = dict(ENV), None
    if not args.no_metrics:
        metrics_port = free_port()
        gateway_env.update(METRICS_PORT=str(metrics_port), METRICS_HOST="127.0.0.1",
                           PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="bench-metrics-"))
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    gateway = start([sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host",
                     "127.0.0.1", "--port", str(gateway_port), "--workers", str(args.workers),
                     "--loop",
                     "uvloop", "--http", "portal.server:HttpProtocol", "--no-access-log",
                     "--no-proxy-headers",
                     "--lifespan", "on"],
                    cwd=ROOT, env=gateway_env)
    started.append(gateway)
    wait_for_port(gateway_port)
    time.sleep(2)
    litellm = None if args.no_litellm else start_litellm(upstream_url)
    if litellm:
        started.append(litellm[0])

    targets = {"direct": (upstream_url, "none", None),
               "gateway": (f"http://127.0.0.1:{gateway_port}/v1", token, gateway.pid)}
    if litellm:
        targets["litellm"] = (f"http://127.0.0.1:{litellm[1]}/v1", "sk-bench", litellm[0].pid)
    results: dict[str, list[dict]] = {name: [] for name in targets}
    try:
        for name, (base, key, pid) in targets.items():
            for stream in (False, True):
                for concurrency in levels:
                    results[name].append(run_wrk(wrk, base + "/chat/completions", key,
                                                 concurrency, args.duration, stream, pid))
        ttft = {name: asyncio.run(time_to_first_token(base + "/chat/completions", key, 200))
                for name, (base, key, _pid) in targets.items()}
        time.sleep(1.5)  # the workers publish their counts once a second
        metered = scrape_requests(metrics_url) if metrics_url else None
        from billing.usage.drain import drain_usage_stream
        from billing.usage.models import UsageRecord

        UsageRecord.objects.all().delete()
        while drain_usage_stream():
            pass
        records_ok = UsageRecord.objects.filter(status_code=200).count()
        records = UsageRecord.objects.count()
    finally:
        for process in (gateway, upstream, litellm[0] if litellm else None):
            if process:
                stop(process)

    succeeded = sum(r["succeeded"] for r in results["gateway"]) + 200  # + the TTFT probes
    report = {"results": results, "ttft_ms_p50": ttft, "workers": args.workers,
              "metrics": metrics_url is not None, "metrics_requests_200": metered,
              "cpus": os.cpu_count(), "load_average_before": LOAD_BEFORE, "usage": {
        "gateway_requests_succeeded": succeeded, "usage_records": records,
        "usage_records_status_200": records_ok,
        "lost": max(0, succeeded - records_ok)}}
    print_table(report)
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nJSON written to {path.relative_to(ROOT)}")


LOAD_BEFORE = os.getloadavg()


def scrape_requests(url: str) -> float:
    """portal_gateway_requests_total{status="200"} as the gateway's metrics port says."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "portal_gateway_requests_total" and sample.labels.get(
                    "status") == "200":
                total += sample.value
    return total


def print_table(report: dict) -> None:
    results = report["results"]
    direct = {(r["stream"], r["concurrency"]): r for r in results["direct"]}
    print(f"\n{'target':<9} {'mode':<7} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'+p50 ms':>8} {'+p99 ms':>8} {'CPU ms/req':>10} {'req/s/core':>10} "
          f"{'errors':>7}")
    for name, rows in results.items():
        for r in rows:
            base = direct[(r["stream"], r["concurrency"])]
            added = ("", "") if name == "direct" else (
                f"{r['p50_ms'] - base['p50_ms']:.2f}", f"{r['p99_ms'] - base['p99_ms']:.2f}")
            cpu = "" if r["cpu_ms_per_request"] is None else f"{r['cpu_ms_per_request']:.3f}"
            per_core = "" if r.get("rps_per_core") is None else f"{r['rps_per_core']:.0f}"
            print(f"{name:<9} {'stream' if r['stream'] else 'json':<7} {r['concurrency']:>3} "
                  f"{r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {added[0]:>8} "
                  f"{added[1]:>8} {cpu:>10} {per_core:>10} {r['errors']:>7}")
    print("\ntime to first token, p50 (ms):", report["ttft_ms_p50"])
    print("usage:", report["usage"])
    print(f"workers: {report['workers']}, metrics on: {report['metrics']} (200s counted by "
          f"the metrics port: {report['metrics_requests_200']}), {report['cpus']} CPUs, load "
          f"average before the run: {report['load_average_before']}")


if __name__ == "__main__":
    main()
