#!/usr/bin/env python3
"""The sidecar benchmark's measurements (bench/sidecars.sh builds and sets everything up, then
calls this; see bench/README.md, "Sidecars").

For each sidecar, in one run, on the same event log, each time with a fresh sidecar process:

- raw: the sidecar fed by the minimal client in its own language (python_client.py,
  typescript_client.js): the gateway's requests, streams and window, nothing else around;
- through the gateway: the sidecar fed by `projector-gateway run` with the default connector
  settings (8 partitions, window 256, max_ops 500, max_wait_ms 0 unless `--batch-max-wait-ms`
  says otherwise) from the SQLite log into a
  SQLite target with the bookings schema; timed from the gateway's start until every
  partition's checkpoint is at the log head.

With `--rounds N` both are measured N times, alternating which goes first, and the medians are
compared. Rates are per event sent to the sidecar (the types its Describe declares, or all).

While each measurement runs, /proc is sampled every 50 ms: the CPU of every process, and for
the sidecar's main thread (where Python's asyncio loop and Node.js's JavaScript run) the time
on a CPU, the time runnable but waiting for a CPU (run queue), and the rest, idle: waiting for
requests. A sidecar that is idle through the gateway but not with its raw client is being fed
too slowly; one that waits for a CPU is losing it to other processes.

Prints the tables, then one `bench sidecar=...` line per sidecar. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TICKS = os.sysconf("SC_CLK_TCK")
TARGET_RATIO = 0.9
# The most gateway CPU time per event sent behind a sidecar that is the bottleneck.
TARGET_CPU_US = 50
PARTITIONS = 8  # the gateway's default, which the config leaves in place


def log(message: str) -> None:
    sys.stderr.write(f"bench/sidecars: {message}\n")
    sys.stderr.flush()


def read_proc(pid: int):
    """(CPU seconds of the whole process, main thread on-CPU seconds, main thread run-queue
    wait seconds), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as f:
            on_cpu, waiting, _ = f.read().split()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS, int(on_cpu) / 1e9, int(waiting) / 1e9


class Sampler(threading.Thread):
    """Samples `read_proc` of some processes every 50 ms, with the wall-clock time."""

    def __init__(self, pids: dict):
        super().__init__(daemon=True)
        self.pids = pids
        self.samples = []
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), {name: read_proc(pid) for name, pid in self.pids.items()}))
            if self.done.wait(0.05):
                return

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.samples.append((time.time(), {name: read_proc(pid) for name, pid in self.pids.items()}))

    def between(self, start: float, end: float) -> dict:
        """Per process: cpu, on_cpu, waiting (seconds) from the last sample at or before `start`
        to the first at or after `end`, and the wall time between those samples."""
        first = max((s for s in self.samples if s[0] <= start), key=lambda s: s[0], default=self.samples[0])
        last = min((s for s in self.samples if s[0] >= end), key=lambda s: s[0], default=self.samples[-1])
        out = {"wall": last[0] - first[0]}
        for name in self.pids:
            a, b = first[1].get(name), last[1].get(name)
            if a is None or b is None:
                raise SystemExit(f"{name} was not running for the whole measurement")
            out[name] = {"cpu": b[0] - a[0], "on_cpu": b[1] - a[1], "waiting": b[2] - a[2]}
        return out


class Sidecar:
    """A sidecar process; its address comes from its `listening on HOST:PORT` line."""

    def __init__(self, command: list, env: dict, stderr_path: str):
        self.stderr = open(stderr_path, "ab")
        self.process = subprocess.Popen(
            command + ["--address", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=self.stderr, env=env
        )
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise SystemExit(f"{command[0]} did not print `listening on` (got {line!r}); see {stderr_path}")
        self.address = line.removeprefix("listening on ")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


def parse_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"no RESULT line in the client's output:\n{stdout}")


def usage_of(window: dict, sidecar: str, other: str) -> dict:
    wall = window["wall"]
    s, o = window[sidecar], window[other]
    return {
        "sidecar_cpu": s["cpu"] / wall,
        "main_busy": s["on_cpu"] / wall,
        "main_waiting": s["waiting"] / wall,
        "main_idle": max(0.0, 1 - (s["on_cpu"] + s["waiting"]) / wall),
        "other_cpu": o["cpu"] / wall,
    }


def raw(name: str, sidecar_cmd: list, client_cmd: list, env: dict, events: str, work: str, tag: str) -> dict:
    sidecar = Sidecar(sidecar_cmd, env, os.path.join(work, f"{name}-raw-{tag}-sidecar.log"))
    try:
        client = subprocess.Popen(
            client_cmd + ["--address", sidecar.address, "--events", events],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = Sampler({"sidecar": sidecar.process.pid, "client": client.pid})
        sampler.start()
        # The client exits right after its last response: stop sampling before it does.
        stdout_lines = []
        for line in client.stdout:
            stdout_lines.append(line)
            if line.startswith("RESULT "):
                sampler.stop()
        stderr = client.stderr.read()
        if client.wait() != 0:
            raise SystemExit(f"the {name} client failed ({client.returncode}):\n{stderr}")
    finally:
        sidecar.stop()
    result = parse_result("".join(stdout_lines))
    result.update(usage_of(sampler.between(result["started_at"], result["started_at"] + result["seconds"]), "sidecar", "client"))
    log(f"{name} raw: {result['sent_per_s']} events/s ({result['sent']} events in {result['seconds']:.2f}s)")
    return result


def gateway_config(log_path: str, address: str, target: str, max_wait_ms: int = 0, adaptive_wait_ms=None) -> str:
    schema = os.path.join(ROOT, "sidecar-examples", "bookings-schema.sql")
    adaptive = "" if adaptive_wait_ms is None else f", adaptive_wait_ms: {adaptive_wait_ms}"
    return f"""connectors:
  - id: bench
    source:
      sqlite: {{ path: "{log_path}" }}
    sidecar:
      address: "http://{address}"
    batch: {{ max_wait_ms: {max_wait_ms}{adaptive} }}
    sink:
      sqlite:
        path: "{target}"
        init_sql_file: "{schema}"
"""


def low_watermark(target: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=1)
        try:
            rows = conn.execute(
                "SELECT position FROM checkpoints WHERE connector = 'bench' AND partition_count = ?", (PARTITIONS,)
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet
    return min(r[0] for r in rows) if len(rows) == PARTITIONS else 0


def through_gateway(
    name: str, sidecar_cmd: list, env: dict, gateway: str, log_path: str, head: int, sent: int, work: str, tag: str, max_wait_ms: int,
    adaptive_wait_ms=None,
) -> dict:
    target = os.path.join(work, f"{name}-{tag}-target.db")
    config = os.path.join(work, f"{name}-{tag}-gateway.yaml")
    sidecar = Sidecar(sidecar_cmd, env, os.path.join(work, f"{name}-gateway-{tag}-sidecar.log"))
    try:
        with open(config, "w", encoding="utf-8") as f:
            f.write(gateway_config(log_path, sidecar.address, target, max_wait_ms, adaptive_wait_ms))
        with open(os.path.join(work, f"{name}-{tag}-gateway.log"), "ab") as gateway_log:
            started_at = time.time()
            started = time.perf_counter()
            process = subprocess.Popen([gateway, "run", "--config", config], stderr=gateway_log, stdout=gateway_log)
            sampler = Sampler({"sidecar": sidecar.process.pid, "gateway": process.pid})
            sampler.start()
            try:
                deadline = started + 1800
                while low_watermark(target) < head:
                    if process.poll() is not None:
                        raise SystemExit(f"the gateway exited ({process.returncode}); see {gateway_log.name}")
                    if sidecar.process.poll() is not None:
                        raise SystemExit(f"the {name} sidecar exited; see the logs in {work}")
                    if time.perf_counter() > deadline:
                        raise SystemExit("the gateway did not reach the log head within 30 minutes")
                    time.sleep(0.01)
                seconds = time.perf_counter() - started
                sampler.stop()
            finally:
                process.terminate()
                process.wait(60)
    finally:
        sidecar.stop()
    conn = sqlite3.connect(target)
    bookings = conn.execute("SELECT count(*) FROM bookings").fetchone()[0]
    conn.close()
    if bookings == 0:
        raise SystemExit(f"the {name} read model is empty: nothing was projected")
    result = {"sent": sent, "seconds": round(seconds, 4), "sent_per_s": round(sent / seconds)}
    result.update(usage_of(sampler.between(started_at, started_at + seconds), "sidecar", "gateway"))
    # The gateway's CPU time per event sent (user + system, its sidecar-facing and SQLite work).
    result["gateway_us_per_event"] = result["other_cpu"] * seconds / sent * 1e6
    log(f"{name} through the gateway: {result['sent_per_s']} events/s ({sent} events in {seconds:.2f}s)")
    return result


def per_busy_s(x: dict) -> float:
    """Events answered per second the sidecar's main thread was on a CPU."""
    return x["sent_per_s"] / x["main_busy"] if x["main_busy"] > 0 else float("nan")


def pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True, help="the projector-gateway binary (release)")
    parser.add_argument("--python", required=True, help="the Python example's venv python")
    parser.add_argument("--typescript", required=True, help="the TypeScript example's launcher")
    parser.add_argument("--events", type=int, default=100_000, help="events in the log (default 100,000)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each kind per sidecar (medians compared)")
    parser.add_argument("--only", default="python,typescript", help="comma-separated sidecars")
    parser.add_argument(
        "--batch-max-wait-ms", type=int, default=0, help="the connector's batch.max_wait_ms (default 0, the product default)"
    )
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    began = time.perf_counter()
    load_before = os.getloadavg()
    base = args.dir or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="projector-sidecar-bench-", dir=base)
    log(f"working in {work}")
    log_path = os.path.join(work, "events.db")
    events = os.path.join(work, "events.jsonl")
    streams = max(args.events // 4, 1000)  # about four events per booking, as bench/run
    generate = [args.gateway, "generate", "--log", log_path, "--events", str(args.events), "--streams", str(streams)]
    subprocess.run(generate, check=True, stdout=subprocess.DEVNULL)
    export = [sys.executable, os.path.join(HERE, "export_log.py"), "--log", log_path, "--out", events, "--partitions", str(PARTITIONS)]
    subprocess.run(export, check=True, stdout=subprocess.DEVNULL)

    env = dict(os.environ, REDUCER_TARGET="sql", REDUCER_LOG_LEVEL=os.environ.get("REDUCER_LOG_LEVEL", "warning"))
    sidecars = {
        "python": (
            [args.python, os.path.join(ROOT, "sidecar-examples", "python", "reducer.py")],
            [args.python, os.path.join(HERE, "python_client.py")],
        ),
        "typescript": ([args.typescript], ["node", os.path.join(HERE, "typescript_client.js")]),
    }
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for name in names:
        if name not in sidecars:
            raise SystemExit(f"unknown sidecar {name!r}; choose from {', '.join(sidecars)}")
    rows = []
    for name in names:
        sidecar_cmd, client_cmd = sidecars[name]
        raws, gateways, unadaptive = [], [], []
        sent = None
        for round_ in range(args.rounds):
            # Rotate which goes first, so a change in the machine's load hits each alike.
            order = ["raw", "gateway", "unadaptive"][round_ % 3 :] + ["raw", "gateway", "unadaptive"][: round_ % 3]
            for kind in order:
                subprocess.run(["sync"], check=False)
                if kind == "raw":
                    raws.append(raw(name, sidecar_cmd, client_cmd, env, events, work, str(round_)))
                    sent = raws[-1]["sent"]
                else:
                    if sent is None:  # the gateway sends what the raw client sends
                        sent = raw(name, sidecar_cmd, client_cmd, env, events, work, "count")["sent"]
                    # `unadaptive`: the gateway without its adaptive wait (`batch.adaptive_wait_ms: 0`),
                    # as it batched before: what the wait saves in CPU per event, in the same run.
                    adaptive = 0 if kind == "unadaptive" else None
                    (unadaptive if kind == "unadaptive" else gateways).append(
                        through_gateway(
                            name, sidecar_cmd, env, args.gateway, log_path, args.events, sent, work, f"{kind}-{round_}",
                            args.batch_max_wait_ms, adaptive,
                        )
                    )
        rows.append((name, raws, gateways, unadaptive))

    load_after = os.getloadavg()
    total = time.perf_counter() - began
    print(
        f"projector-gateway sidecar benchmark: {args.events} bookings events, {PARTITIONS} partitions, window 256, "
        f"SQLite log -> sidecar -> SQLite target (batch.max_wait_ms {args.batch_max_wait_ms}), {os.cpu_count()} CPU(s), {args.rounds} round(s)"
    )
    print("whole run {:.1f}s; load average {:.2f} {:.2f} {:.2f} before, {:.2f} {:.2f} {:.2f} after".format(total, *load_before, *load_after))
    print()
    print(
        f"{'sidecar':<11} {'events':>7} {'raw client ev/s':>16} {'through gateway ev/s':>21} {'ratio':>6}  {'target >= 0.9':<13}"
        f" {'ratio per busy s':>16}"
    )
    summary = []
    for name, raws, gateways, unadaptive in rows:
        r = statistics.median(x["sent_per_s"] for x in raws)
        g = statistics.median(x["sent_per_s"] for x in gateways)
        ratio = g / r
        per_busy = statistics.median(per_busy_s(x) for x in gateways) / statistics.median(per_busy_s(x) for x in raws)
        cpu = statistics.median(x["gateway_us_per_event"] for x in gateways)
        cpu_unadaptive = statistics.median(x["gateway_us_per_event"] for x in unadaptive)
        g_unadaptive = statistics.median(x["sent_per_s"] for x in unadaptive)
        summary.append((name, raws[0]["sent"], r, g, ratio, per_busy, cpu, cpu_unadaptive, g_unadaptive))
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"{name:<11} {raws[0]['sent']:>7} {r:>16.0f} {g:>21.0f} {ratio:>6.2f}  {verdict:<13} {per_busy:>16.2f}")
    print()
    print(
        f"{'sidecar':<11} {'gateway CPU us/ev':>18} {'target <= 50':<13} {'without adaptive wait':>22} {'ev/s without':>13}"
    )
    for name, _, _, g, _, _, cpu, cpu_unadaptive, g_unadaptive in summary:
        verdict = "met" if cpu <= TARGET_CPU_US else "MISSED"
        print(f"{name:<11} {cpu:>18.1f} {verdict:<13} {cpu_unadaptive:>22.1f} {g_unadaptive:>13.0f}")
    print("gateway CPU us/ev: the gateway's user + system CPU time per event sent, medians; without adaptive wait:")
    print("the same connector with batch.adaptive_wait_ms: 0 (a transaction per answer or two behind a slow sidecar)")
    print()
    print("events: sent to the sidecar (the types its Describe declares) out of", args.events, "in the log; medians of the rounds")
    print("ratio per busy s: the same ratio for the events per second of the sidecar main thread's time on a CPU (below)")
    print()
    print("where the time went (share of the timed wall time; sidecar main thread: on a CPU / runnable, waiting for a CPU / idle, waiting for requests)")
    print(
        f"{'sidecar':<11} {'run':<10} {'ev/s':>7} {'main thread busy/run-queue/idle':>32} {'ev per busy s':>14}"
        f" {'sidecar CPU':>12} {'feeder CPU':>11}"
    )
    for name, raws, gateways, unadaptive in rows:
        for kind, results, feeder in (("raw", raws, "client"), ("gateway", gateways, "gateway"), ("no-adapt", unadaptive, "gateway")):
            for i, x in enumerate(results):
                split = f"{pct(x['main_busy'])} / {pct(x['main_waiting'])} / {pct(x['main_idle'])}"
                per_busy = per_busy_s(x)
                print(
                    f"{name:<11} {kind + ' #' + str(i + 1):<10} {x['sent_per_s']:>7} {split:>32} {per_busy:>14.0f}"
                    f" {pct(x['sidecar_cpu']):>12} {pct(x['other_cpu']):>11}  ({feeder})"
                )
    print()
    print("ev per busy s: events answered per second the sidecar's main thread spent on a CPU (its rate with a core to itself);")
    print("idle: the share of the time it had nothing to do, i.e. was waiting for requests")
    print()
    for name, sent, r, g, ratio, per_busy, cpu, cpu_unadaptive, _ in summary:
        print(
            f"bench sidecar={name} events={sent} raw_events_per_s={r:.0f} gateway_events_per_s={g:.0f} ratio={ratio:.2f}"
            f" ratio_per_busy_s={per_busy:.2f} gateway_cpu_us_per_event={cpu:.1f} without_adaptive_wait={cpu_unadaptive:.1f}"
        )
    if args.keep:
        log(f"kept {work}")
    else:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
