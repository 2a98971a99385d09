#!/usr/bin/env python3
"""Turns rpc_bench's Google Benchmark JSON into results.md and two plots.

usage: report.py RESULTS.json OUT_DIR

results.md puts each dynrpc plane beside gRPC C++ and the floor, with the
ratios dynrpc/gRPC and dynrpc/floor (for the HTTP plane, dynrpc/h2 floor;
for the NATS plane, dynrpc/nats floor: bare nats.c request/reply through the
same nats-server), then the NATS plane against its floor, the h2load runs
against the HTTP/2 floor and dynrpc's JSON and gRPC endpoints, and says which
machine and build made the figures. The plots (SVG, by gnuplot) are latency
against payload and throughput against calls in flight. Results from before
the NATS plane (no dynrpc-nats or nats-floor runs) render as they did.
Rows run in rounds (several runs of one name) give each figure's median
and, between two systems, the median of the rounds' ratios (merge_rounds,
quotient).
"""
import json
import os
import platform
import re
import subprocess
import sys
from collections import defaultdict


def human_bytes(n):
    n = int(n)
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def fmt(x, digits=1):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


# How a system is named in tables and plots (its benchmark name otherwise).
DISPLAY = {"nats-floor": "nats floor", "event-floor": "event floor"}


def display(system):
    return DISPLAY.get(system, system)


def median(values):
    """The middle value (the lower middle one of an even count)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


class Figure(float):
    """A figure measured in rounds: its value is the median over them, and
    `rounds` keeps each round's, in the order they ran."""

    def __new__(cls, values):
        figure = super().__new__(cls, median(values))
        figure.rounds = list(values)
        return figure


def quotient(a, b):
    """a / b; for two figures measured in the same rounds, the median of
    the rounds' quotients: each compares figures taken seconds apart, where
    the medians' quotient may pair a fast phase with a slow one."""
    ra, rb = getattr(a, "rounds", None), getattr(b, "rounds", None)
    if ra and rb and len(ra) == len(rb) > 1 and all(rb):
        return median([x / y for x, y in zip(ra, rb)])
    return a / b


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{quotient(a, b):.2f}×"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


def peak_rss(table, system):
    return max([b.get("server_peak_rss_mib", 0) for row in table.values()
                for name, b in row.items() if name == system] or [0])


def scaling_section(idle, streams_at, throughput, systems):
    """The scaling runs: idle connections, concurrent streams, and where the
    in-flight curve (calls/s against calls in flight, 16 B) is."""
    def get(table, key, system, field):
        b = table.get(key, {}).get(system)
        return None if b is None else b.get(field)

    def system_table(first, table, cols, fields):
        """A row per key of `table`; per system, a column per (title,
        field)."""
        out = ["| " + first + " | " + " | ".join(
            f"{display(s)} {title}" for s in cols for title, _ in fields) +
            " |", "|" + "---|" * (1 + len(fields) * len(cols))]
        for n in sorted(table):
            row = [f"{n:,}"] + [fmt(get(table, n, s, field))
                                for s in cols for _, field in fields]
            out.append("| " + " | ".join(row) + " |")
        return out

    lines = []
    if idle:
        cols = [s for s in systems if any(s in row for row in idle.values())]
        lines += ["", "## Scaling: idle connections", "",
                  "N connections held open to the server that make no call "
                  "(over HTTP/2 past the preface and SETTINGS), beside one "
                  "client making one 16-byte call at a time: its p50, the "
                  "client process's and the server's CPU per call, and the "
                  "server's memory per idle connection (VmRSS with them less "
                  "before, over N; at N = 1 that is noise). The NATS plane's "
                  "server holds one connection, to the NATS server, whatever "
                  "its clients do: it has no row. Plots: idle.svg, "
                  "idle_memory.svg.", ""]
        lines += system_table("idle connections", idle, cols, [
            ("p50 µs", "p50_us"), ("client CPU µs", "client_cpu_us_per_call"),
            ("server CPU µs", "server_cpu_us_per_call"),
            ("KiB per connection", "server_kib_per_connection")])
    if streams_at:
        cols = [s for s in systems
                if any(s in row for row in streams_at.values())]
        lines += ["", "## Scaling: concurrent streams", "",
                  "S server streams at once from one client, 16-byte "
                  "messages, 200,000 in all (at least 10 a stream): messages/s "
                  "and the server's memory per stream (its largest VmRSS "
                  "meanwhile less before, over S). Plot: streams.svg.", ""]
        lines += system_table("streams", streams_at, cols, [
            ("messages/s", "msgs_per_s"),
            ("KiB per stream", "server_kib_per_stream")])
    flights = sorted({k[0] for k in throughput if k[1] == 16})
    if len(flights) > 3:
        lines += ["", "## Scaling: calls in flight", "",
                  "Calls/s against calls in flight from "
                  f"{flights[0]} to {flights[-1]:,}, 16 B (the blocking "
                  "floor stops at 64: a thread per call): the 16 B rows of the "
                  "throughput table, plotted in throughput.svg.", ""]
    return lines


def targets_section(unary, throughput, stream, h2, planes, systems):
    """Issue 14's targets, each with the worst ratio measured and whether it
    is met; a target whose figures were not measured (a partial run) says
    so."""
    def get(table, key, system, field):
        b = table.get(key, {}).get(system)
        return None if b is None else b.get(field)

    rows = []

    def check(target, pairs, bound, higher_is_better):
        """pairs: (where, value, reference); the ratio value/reference must be
        >= bound (higher_is_better) or <= bound."""
        ratios = [(where, quotient(v, r)) for where, v, r in pairs
                  if v is not None and r]
        if not ratios:
            rows.append(f"| {target} | not measured | – |")
            return
        pick = min if higher_is_better else max
        where, worst = pick(ratios, key=lambda x: x[1])
        met = all((r >= bound) if higher_is_better else (r <= bound)
                  for _, r in ratios)
        rows.append(f"| {target} | {worst:.2f}× at {where} "
                    f"({len(ratios)} figures) | {'met' if met else 'missed'} |")

    small = [p for p in sorted(unary) if p <= 64 << 10]
    flights = [k for k in sorted(throughput)
               if k[0] in (8, 64) and k[1] <= 64 << 10]
    where = lambda k: f"{k[0]} in flight, {human_bytes(k[1])}"
    if "dynrpc-tcp" in planes:
        t = "dynrpc-tcp"
        check("TCP: unary p50 ≤ 1.3× the floor, 16 B to 64 KiB",
              [(human_bytes(p), get(unary, p, t, "p50_us"),
                get(unary, p, "floor", "p50_us")) for p in small], 1.3, False)
        check("TCP: calls/s ≥ 3× gRPC at 8 and 64 in flight, up to 64 KiB",
              [(where(k), get(throughput, k, t, "calls_per_s"),
                get(throughput, k, "grpc", "calls_per_s")) for k in flights],
              3.0, True)
        check("TCP: calls/s ≥ 0.8× the event floor at 8 and 64, up to 64 KiB",
              [(where(k), get(throughput, k, t, "calls_per_s"),
                get(throughput, k, "event-floor", "calls_per_s"))
               for k in flights], 0.8, True)
        check("TCP: one stream ≥ 5× gRPC (messages/s)",
              [("1 stream", get(stream, 1, t, "msgs_per_s"),
                get(stream, 1, "grpc", "msgs_per_s"))], 5.0, True)
        check("TCP: 1 MiB and 16 MiB unary ≤ 1.2× the floor's time (p50)",
              [(human_bytes(p), get(unary, p, t, "p50_us"),
                get(unary, p, "floor", "p50_us"))
               for p in sorted(unary) if p >= 1 << 20], 1.2, False)
    if "dynrpc-http" in planes:
        t = "dynrpc-http"
        check("HTTP: h2load calls/s ≥ 0.8× the bare nghttp2 echo at 8 and 64",
              [(f"{n} streams", h2("dynrpc-grpc", n, "calls_per_s"),
                h2("h2-floor", n, "calls_per_s")) for n in (8, 64)], 0.8, True)
        check("HTTP: h2load p50 ≤ 1.3× the bare nghttp2 echo",
              [("1 stream", h2("dynrpc-grpc", 1, "p50_us"),
                h2("h2-floor", 1, "p50_us"))], 1.3, False)
        check("HTTP: calls/s ≥ 2× gRPC C++ at 8 and 64, up to 64 KiB",
              [(where(k), get(throughput, k, t, "calls_per_s"),
                get(throughput, k, "grpc", "calls_per_s")) for k in flights],
              2.0, True)
    if "dynrpc-nats" in planes and "nats-floor" in systems:
        t = "dynrpc-nats"
        check("NATS: unary p50 ≤ 1.2× bare nats.c, up to 1 MiB",
              [(human_bytes(p), get(unary, p, t, "p50_us"),
                get(unary, p, "nats-floor", "p50_us"))
               for p in sorted(unary) if p <= 1 << 20], 1.2, False)
        check("NATS: calls/s ≥ 0.8× the nats floor at 8 and 64",
              [(where(k), get(throughput, k, t, "calls_per_s"),
                get(throughput, k, "nats-floor", "calls_per_s"))
               for k in sorted(throughput) if k[0] in (8, 64)], 0.8, True)
    if "floor" in systems:
        floor_peak = max(peak_rss(unary, "floor"), peak_rss(throughput, "floor"))
        check("Memory: server peak RSS ≤ 2× the floor's",
              [(p, max(peak_rss(unary, p), peak_rss(throughput, p)),
                floor_peak) for p in planes], 2.0, False)
    if not rows:
        return []
    return ["", "## Issue 14's targets", "",
            "Each target's worst ratio over the figures it covers, from the "
            "tables above; a missed one is explained in the README's "
            "Benchmarks section (\"Where we stand against issue 14\").", "",
            "| target | worst | |", "|---|---|---|"] + rows


def merge_rounds(benchmarks, failed):
    """One entry per benchmark name: rpc_bench runs the rows issue 14's
    targets judge in rounds (the row's systems one after another, then
    again); each numeric figure of a name is the median over its rounds (a
    Figure, which keeps each round's for quotient()), with `rounds` saying
    how many. Failed runs go
    to `failed` (name, message) and out of the median."""
    by_name = {}
    for b in benchmarks:
        if b.get("run_type") == "aggregate":
            continue
        if b.get("error_occurred"):
            failed.append((b["name"], b.get("error_message", "")))
            continue
        by_name.setdefault(b["name"], []).append(b)
    merged = []
    for runs in by_name.values():
        entry = dict(runs[0])
        for key, value in runs[0].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            entry[key] = Figure([r[key] for r in runs if key in r])
        entry["rounds"] = len(runs)
        merged.append(entry)
    return merged


def main():
    results_path, out_dir = sys.argv[1], sys.argv[2]
    with open(results_path) as f:
        data = json.load(f)

    unary = defaultdict(dict)       # payload -> system -> benchmark
    throughput = defaultdict(dict)  # (in_flight, payload) -> system -> b
    stream = defaultdict(dict)      # streams -> system -> b
    h2load = defaultdict(dict)      # target -> in_flight -> b
    idle = defaultdict(dict)        # idle connections -> system -> b
    streams_at = defaultdict(dict)  # concurrent streams -> system -> b
    systems = []
    failed = []                     # (name, message)
    entries = merge_rounds(data["benchmarks"], failed)
    rounds = max((b["rounds"] for b in entries), default=1)
    for b in entries:
        parts = b["name"].split("/")
        kind, system = parts[0], parts[1]
        if kind == "H2load":
            h2load[system][int(parts[2])] = b
            continue
        if system not in systems:
            systems.append(system)
        if kind == "Unary":
            unary[int(parts[2])][system] = b
        elif kind == "Throughput":
            throughput[(int(parts[2]), int(parts[3]))][system] = b
        elif kind == "Stream":
            stream[int(parts[2])][system] = b
        elif kind == "Idle":
            idle[int(parts[2])][system] = b
        elif kind == "Streams":
            streams_at[int(parts[2])][system] = b
    planes = [s for s in systems if s.startswith("dynrpc-")]
    http_planes = [p for p in planes if p.endswith("-http")]
    # The event-driven floor's ratio columns (the TCP plane's calls in
    # flight), when it was measured.
    event_planes = ([p for p in planes if p.endswith("-tcp")]
                    if "event-floor" in systems else [])
    # The NATS floor's ratio columns, when it was measured.
    nats_planes = ([p for p in planes if p.endswith("-nats")]
                   if "nats-floor" in systems else [])

    def get(table, key, system, field):
        b = table.get(key, {}).get(system)
        return None if b is None else b.get(field)

    def h2(target, in_flight, field):
        return get(h2load, target, in_flight, field)

    # The HTTP/2 floor under h2load, for the HTTP plane's columns: its p50
    # latency at 1 in flight and its calls/s, at h2load's payload only.
    h2_payload = h2("h2-floor", 1, "payload_bytes")

    def h2_floor_latency(payload):
        if h2_payload is None or payload != h2_payload:
            return None
        return h2("h2-floor", 1, "p50_us")

    def h2_floor_calls(key):
        if h2_payload is None or key[1] != h2_payload:
            return None
        return h2("h2-floor", key[0], "calls_per_s")

    lines = ["# Benchmark results", ""]
    ctx = data["context"]
    lines += [
        f"Machine: {ctx.get('num_cpus')} CPUs, {cpu_model()}; "
        + ("client pinned to CPU 0, each server to CPU 1; "
           if ctx.get('num_cpus', 1) >= 2 else "nothing pinned (one CPU); ")
        + "separate processes, loopback TCP.",
        f"Build: Release (-O3), {version(['g++', '--version'])}; "
        f"protobuf {version(['protoc', '--version'])}; "
        f"gRPC C++ {version(['pkg-config', '--modversion', 'grpc++'])}.",
        f"Run: {ctx.get('date')}; Google Benchmark "
        f"{ctx.get('library_build_type', '')} library."
        + (f" The rows issue 14's targets judge (unary latency; calls/s at "
           f"8 and 64 in flight up to 64 KiB; h2load) ran in {rounds} "
           f"rounds, the row's systems one after another each round; each "
           f"of their figures is the median over the rounds, and each ratio "
           f"between two of them the median of the rounds' ratios."
           if rounds > 1 else ""),
    ]
    if ctx.get("nats_server"):
        cpu = ctx.get("nats_server_cpu", "unpinned")
        payload_limit = ctx.get("nats_max_payload")
        lines.append(
            f"NATS: {version(['nats-server', '--version'])} at "
            f"{ctx['nats_server']}, "
            + (f"pinned to CPU {cpu} with the servers"
               if cpu != "unpinned" else "not pinned")
            + f", {ctx.get('nats_server_origin', '')}; "
            + (f"max_payload {int(payload_limit):,} bytes; "
               if payload_limit else "")
            + f"nats.c {ctx.get('nats_c_version', '?')}.")
    lines += [
        "",
        "The floor is a blocking length-prefixed echo over a raw socket: what "
        "any TCP request plane must pay; with calls in flight it spends a "
        "thread and a connection per call. "
        + ("The event floor is the same echo served by one epoll thread "
           "(bench/event_floor_server.cc), its calls in flight pipelined on "
           "one connection as dynrpc's TCP plane multiplexes them, read and "
           "written in batches on both sides: the floor for calls in flight "
           "(`/ event floor` columns). " if event_planes else "")
        + ("The h2 floor is a bare nghttp2 echo (bench/h2_floor_server.cc), "
           "what any HTTP/2 plane must pay; h2load is its client, so `/ h2 "
           "floor` columns set dynrpc's own client and server against h2load "
           "and that echo (p50 latency at 1 in flight, calls/s), at h2load's "
           "payload only; the like-for-like comparison of servers under one "
           "client is the h2load table. " if h2_payload is not None else "")
        + ("The nats floor is bare nats.c request/reply through the same "
           "nats-server as dynrpc-nats (bench/nats_floor_server.cc, a nats.c "
           "echo; the client is natsConnection_Request one call at a time, "
           "asynchronous publishes with a reply subject per call in flight "
           "otherwise), both ends connected with send-asap as dynrpc's NATS "
           "plane connects: what any NATS request plane must pay. The NATS "
           "plane's p50 target (issue 14: within 1.2× of bare nats.c "
           "request/reply) is "
           "the `p50 / nats floor p50` column. Server CPU is the echo "
           "server's alone; the nats-server's is in the NATS section. "
           if nats_planes else "")
        + "Ratios under 1 are better for latency and CPU, over 1 better for "
        "throughput.",
        "",
        "## Unary latency (one call at a time, µs)",
        "",
    ]
    header = "| payload | " + " | ".join(
        f"{display(s)} p50 | {display(s)} p99" for s in systems) + " | " + " | ".join(
        f"{p} / grpc p50 | {p} / floor p50" for p in planes) + "".join(
        f" | {p} p50 / h2 floor p50" for p in http_planes) + "".join(
        f" | {p} p50 / nats floor p50" for p in nats_planes) + " |"
    lines += [header, "|" + "---|" * (1 + 2 * len(systems) + 2 * len(planes)
                                      + len(http_planes) + len(nats_planes))]
    for payload in sorted(unary):
        row = [human_bytes(payload)]
        for s in systems:
            row += [fmt(get(unary, payload, s, "p50_us")),
                    fmt(get(unary, payload, s, "p99_us"))]
        for p in planes:
            row += [ratio(get(unary, payload, p, "p50_us"),
                          get(unary, payload, "grpc", "p50_us")),
                    ratio(get(unary, payload, p, "p50_us"),
                          get(unary, payload, "floor", "p50_us"))]
        for p in http_planes:
            row.append(ratio(get(unary, payload, p, "p50_us"),
                             h2_floor_latency(payload)))
        for p in nats_planes:
            row.append(ratio(get(unary, payload, p, "p50_us"),
                             get(unary, payload, "nats-floor", "p50_us")))
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Unary throughput (calls/s; server CPU µs per call)", ""]
    header = "| in flight | payload | " + " | ".join(
        f"{display(s)} calls/s | {display(s)} CPU µs" for s in systems) + " | " + " | ".join(
        f"{p} / grpc | {p} / floor" for p in planes) + "".join(
        f" | {p} / h2 floor" for p in http_planes) + "".join(
        f" | {p} / nats floor" for p in nats_planes) + "".join(
        f" | {p} / event floor" for p in event_planes) + " |"
    lines += [header, "|" + "---|" * (2 + 2 * len(systems) + 2 * len(planes)
                                      + len(http_planes) + len(nats_planes)
                                      + len(event_planes))]
    for key in sorted(throughput):
        row = [str(key[0]), human_bytes(key[1])]
        for s in systems:
            row += [fmt(get(throughput, key, s, "calls_per_s")),
                    fmt(get(throughput, key, s, "server_cpu_us_per_call"))]
        for p in planes:
            row += [ratio(get(throughput, key, p, "calls_per_s"),
                          get(throughput, key, "grpc", "calls_per_s")),
                    ratio(get(throughput, key, p, "calls_per_s"),
                          get(throughput, key, "floor", "calls_per_s"))]
        for p in http_planes:
            row.append(ratio(get(throughput, key, p, "calls_per_s"),
                             h2_floor_calls(key)))
        for p in nats_planes:
            row.append(ratio(get(throughput, key, p, "calls_per_s"),
                             get(throughput, key, "nats-floor", "calls_per_s")))
        for p in event_planes:
            row.append(ratio(get(throughput, key, p, "calls_per_s"),
                             get(throughput, key, "event-floor", "calls_per_s")))
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Server streaming (16-byte messages/s)", ""]
    stream_systems = [s for s in systems if not s.endswith("floor")]
    header = "| streams | " + " | ".join(stream_systems) + " | " + " | ".join(
        f"{p} / grpc" for p in planes) + " |"
    lines += [header, "|" + "---|" * (1 + len(stream_systems) + len(planes))]
    for streams in sorted(stream):
        row = [str(streams)]
        row += [fmt(get(stream, streams, s, "msgs_per_s")) for s in stream_systems]
        row += [ratio(get(stream, streams, p, "msgs_per_s"),
                      get(stream, streams, "grpc", "msgs_per_s")) for p in planes]
        lines.append("| " + " | ".join(row) + " |")

    for p in nats_planes:
        f = "nats-floor"
        lines += ["", f"## NATS: {p} against the nats floor", "",
                  "Both through the same nats-server. Unary latency one call "
                  "at a time (µs); server CPU is the echo server's and "
                  "nats-server CPU the broker's, both µs per call (the "
                  "broker's only when ./scripts/bench started it). Issue "
                  "14's targets are the p50 ratio (1.2×) and the calls/s "
                  "ratio at 8 and 64 in flight (0.8×).", ""]
        lines += ["| payload | " + f"{p} p50 | nats floor p50 | p50 ratio | "
                  f"{p} p99 | nats floor p99 | {p} server CPU | nats floor "
                  f"server CPU | {p} nats-server CPU | nats floor nats-server "
                  "CPU |", "|" + "---|" * 10]
        for payload in sorted(unary):
            if get(unary, payload, p, "p50_us") is None and get(
                    unary, payload, f, "p50_us") is None:
                continue
            lines.append("| " + " | ".join([
                human_bytes(payload),
                fmt(get(unary, payload, p, "p50_us")),
                fmt(get(unary, payload, f, "p50_us")),
                ratio(get(unary, payload, p, "p50_us"),
                      get(unary, payload, f, "p50_us")),
                fmt(get(unary, payload, p, "p99_us")),
                fmt(get(unary, payload, f, "p99_us")),
                fmt(get(unary, payload, p, "server_cpu_us_per_call")),
                fmt(get(unary, payload, f, "server_cpu_us_per_call")),
                fmt(get(unary, payload, p, "nats_server_cpu_us_per_call")),
                fmt(get(unary, payload, f, "nats_server_cpu_us_per_call")),
            ]) + " |")
        lines += ["", "| in flight | payload | " + f"{p} calls/s | nats floor "
                  f"calls/s | ratio | {p} server CPU | nats floor server CPU | "
                  f"{p} nats-server CPU | nats floor nats-server CPU |",
                  "|" + "---|" * 9]
        for key in sorted(throughput):
            if get(throughput, key, p, "calls_per_s") is None and get(
                    throughput, key, f, "calls_per_s") is None:
                continue
            lines.append("| " + " | ".join([
                str(key[0]), human_bytes(key[1]),
                fmt(get(throughput, key, p, "calls_per_s")),
                fmt(get(throughput, key, f, "calls_per_s")),
                ratio(get(throughput, key, p, "calls_per_s"),
                      get(throughput, key, f, "calls_per_s")),
                fmt(get(throughput, key, p, "server_cpu_us_per_call")),
                fmt(get(throughput, key, f, "server_cpu_us_per_call")),
                fmt(get(throughput, key, p, "nats_server_cpu_us_per_call")),
                fmt(get(throughput, key, f, "nats_server_cpu_us_per_call")),
            ]) + " |")

    if h2load:
        names = {"h2-floor": "h2 floor", "dynrpc-json": "dynrpc JSON",
                 "dynrpc-grpc": "dynrpc gRPC", "grpc": "gRPC C++"}
        targets = [t for t in ("h2-floor", "dynrpc-json", "dynrpc-grpc",
                               "grpc")
                   if t in h2load] + sorted(
            t for t in h2load if t not in names)
        flights = sorted({n for t in h2load.values() for n in t})
        requests = max(b.get("requests", 0) for t in h2load.values()
                       for b in t.values())
        lines += ["", "## HTTP/2 under h2load", "",
                  f"h2load {version(['h2load', '--version']).split('/')[-1]}, "
                  f"one connection, h2c with prior knowledge, "
                  f"{human_bytes(h2_payload or 0)} payloads, "
                  f"{int(requests):,} requests per run after a warm-up; "
                  "streams in flight as given. The h2 floor echoes the gRPC "
                  "request's bytes; dynrpc JSON posts "
                  "`{\"data\": \"<base64>\"}` (application/json) and dynrpc "
                  "gRPC a length-prefixed bench.Payload (application/grpc, "
                  "te: trailers), both to `/v1/rpc/bench.Echo/Unary` of the "
                  "dynrpc-http server; gRPC C++ gets the same gRPC body at "
                  "`/grpcbench.Echo/Unary` of its own server (the one the "
                  "other tables measure). Latency at 1 in flight: p50 and p99 "
                  "from h2load's per-request log (--log-file), and its mean. "
                  "Issue 14's HTTP targets are dynrpc gRPC's `p50 / h2 "
                  "floor` (1.3×) and its calls/s at 8 and 64 against the h2 "
                  "floor's (0.8×).", ""]
        header = ("| target | " + " | ".join(
            f"calls/s at {n}" for n in flights) +
            " | p50 µs at 1 | p99 µs at 1 | mean µs at 1 "
            "| server CPU µs per call at 1 | " + " | ".join(
            f"calls/s at {n} / h2 floor" for n in flights) +
            " | p50 / h2 floor | mean / h2 floor |")
        lines += [header, "|" + "---|" * (7 + 2 * len(flights))]
        for t in targets:
            row = [names.get(t, t)]
            row += [fmt(h2(t, n, "calls_per_s")) for n in flights]
            row += [fmt(h2(t, 1, "p50_us")), fmt(h2(t, 1, "p99_us")),
                    fmt(h2(t, 1, "mean_us")),
                    fmt(h2(t, 1, "server_cpu_us_per_call"))]
            row += [ratio(h2(t, n, "calls_per_s"),
                          h2("h2-floor", n, "calls_per_s")) for n in flights]
            row += [ratio(h2(t, 1, "p50_us"), h2("h2-floor", 1, "p50_us")),
                    ratio(h2(t, 1, "mean_us"), h2("h2-floor", 1, "mean_us"))]
            lines.append("| " + " | ".join(row) + " |")

    lines += targets_section(unary, throughput, stream, h2, planes, systems)
    lines += scaling_section(idle, streams_at, throughput, systems)

    peak = {s: max([b.get("server_peak_rss_mib", 0) for t in (unary, throughput)
                    for row in t.values() for name, b in row.items() if name == s]
                   or [0]) for s in systems}
    if h2load.get("h2-floor"):
        peak["h2 floor"] = max(b.get("server_peak_rss_mib", 0)
                               for b in h2load["h2-floor"].values())
    lines += ["", "Server peak memory (VmHWM, MiB): " + ", ".join(
        f"{display(s)} {fmt(v)}" for s, v in peak.items()) + ".", ""]
    if failed:
        lines += ["Failed runs (not in the tables):", ""]
        lines += [f"- `{name}`: {msg}" for name, msg in failed]
        lines.append("")

    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))

    # Plots.
    # The h2 floor (h2load's mean at 1 in flight; its calls/s) is one more
    # series where it was measured.
    latency_series = [(display(s), [(payload, get(unary, payload, s, "p50_us"))
                                    for payload in sorted(unary)])
                      for s in systems]
    throughput_series = [
        (display(s), [(key[0], get(throughput, key, s, "calls_per_s"))
                      for key in sorted(k for k in throughput if k[1] == 16)])
        for s in systems]
    if h2_payload is not None:
        latency_series.append(("h2 floor (h2load)",
                               [(int(h2_payload), h2_floor_latency(h2_payload))]))
    if h2_payload == 16:
        throughput_series.append(
            ("h2 floor (h2load)",
             [(n, h2("h2-floor", n, "calls_per_s"))
              for n in sorted(h2load["h2-floor"])]))

    def write_series(name, series):
        series = [(s, [(x, y) for x, y in points if y is not None])
                  for s, points in series]
        series = [(s, points) for s, points in series if points]
        with open(os.path.join(out_dir, name), "w") as f:
            for s, points in series:
                f.write(f'"{s}"\n')
                for x, y in points:
                    f.write(f"{x} {y}\n")
                f.write("\n\n")
        return len(series)

    idle_series = [(display(s), [(n, get(idle, n, s, "p50_us"))
                                 for n in sorted(idle)]) for s in systems]
    memory_series = [(display(s), [(n, get(idle, n, s,
                                           "server_kib_per_connection"))
                                   for n in sorted(idle) if n >= 100])
                     for s in systems]
    streams_series = [(display(s), [(n, get(streams_at, n, s, "msgs_per_s"))
                                    for n in sorted(streams_at)])
                      for s in systems]
    n_idle = write_series("idle.dat", idle_series)
    n_memory = write_series("idle_memory.dat", memory_series)
    n_streams = write_series("streams.dat", streams_series)
    n_latency = write_series("latency.dat", latency_series)
    n_throughput = write_series("throughput.dat", throughput_series)
    # A plot with no points (a partial run, filtered) is left out: gnuplot
    # refuses an empty one.
    head = """
set terminal svg size 800,480 dynamic background rgb 'white'
set key left top
set grid
"""
    if n_latency > 0:
        subprocess.run(["gnuplot"], text=True, check=True, input=head + f"""
set output '{out_dir}/latency.svg'
set title 'Unary latency, p50 (lower is better)'
set logscale xy
set xlabel 'payload (bytes)'
set ylabel 'µs'
plot for [i=0:{n_latency - 1}] '{out_dir}/latency.dat' index i using 1:2 with linespoints title columnheader(1)
""")
    plots = [
        (n_idle, "idle", "p50 of one active client beside N idle "
         "connections, 16 B (lower is better)", "idle connections held open",
         "µs", "set logscale x 10"),
        (n_memory, "idle_memory", "Server memory per idle connection "
         "(lower is better)", "idle connections held open",
         "KiB per connection", "set logscale x 10"),
        (n_streams, "streams", "Server streaming, 16-byte messages "
         "(higher is better)", "concurrent streams", "messages/s",
         "set logscale x 10"),
    ]
    for n, name, title, xlabel, ylabel, scale in plots:
        if n == 0:
            continue
        subprocess.run(["gnuplot"], text=True, check=True, input=head + f"""
set output '{out_dir}/{name}.svg'
set title '{title}'
{scale}
set xlabel '{xlabel}'
set ylabel '{ylabel}'
plot for [i=0:{n - 1}] '{out_dir}/{name}.dat' index i using 1:2 with linespoints title columnheader(1)
""")
    if n_throughput > 0:
        subprocess.run(["gnuplot"], text=True, check=True, input=head + f"""
set output '{out_dir}/throughput.svg'
set title 'Unary throughput, 16 B payload (higher is better)'
set logscale x 2
set xlabel 'calls in flight'
set ylabel 'calls/s'
plot for [i=0:{n_throughput - 1}] '{out_dir}/throughput.dat' index i using 1:2 with linespoints title columnheader(1)
""")


if __name__ == "__main__":
    main()
