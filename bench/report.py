#!/usr/bin/env python3
"""Turns rpc_bench's Google Benchmark JSON into results.md and two plots.

usage: report.py RESULTS.json OUT_DIR

results.md puts each dynrpc plane beside gRPC C++ and the floor, with the
ratios dynrpc/gRPC and dynrpc/floor, and says which machine and build made
the figures. The plots (SVG, by gnuplot) are latency against payload and
throughput against calls in flight.
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


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


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


def main():
    results_path, out_dir = sys.argv[1], sys.argv[2]
    with open(results_path) as f:
        data = json.load(f)

    unary = defaultdict(dict)       # payload -> system -> benchmark
    throughput = defaultdict(dict)  # (in_flight, payload) -> system -> b
    stream = defaultdict(dict)      # streams -> system -> b
    systems = []
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        parts = b["name"].split("/")
        kind, system = parts[0], parts[1]
        if system not in systems:
            systems.append(system)
        if kind == "Unary":
            unary[int(parts[2])][system] = b
        elif kind == "Throughput":
            throughput[(int(parts[2]), int(parts[3]))][system] = b
        elif kind == "Stream":
            stream[int(parts[2])][system] = b
    planes = [s for s in systems if s.startswith("dynrpc-")]

    def get(table, key, system, field):
        b = table.get(key, {}).get(system)
        return None if b is None else b.get(field)

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
        f"{ctx.get('library_build_type', '')} library.",
        "",
        "The floor is a blocking length-prefixed echo over a raw socket: what "
        "any TCP request plane must pay. Ratios under 1 are better for "
        "latency and CPU, over 1 better for throughput.",
        "",
        "## Unary latency (one call at a time, µs)",
        "",
    ]
    header = "| payload | " + " | ".join(
        f"{s} p50 | {s} p99" for s in systems) + " | " + " | ".join(
        f"{p} / grpc p50 | {p} / floor p50" for p in planes) + " |"
    lines += [header, "|" + "---|" * (1 + 2 * len(systems) + 2 * len(planes))]
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
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Unary throughput (calls/s; server CPU µs per call)", ""]
    header = "| in flight | payload | " + " | ".join(
        f"{s} calls/s | {s} CPU µs" for s in systems) + " | " + " | ".join(
        f"{p} / grpc | {p} / floor" for p in planes) + " |"
    lines += [header, "|" + "---|" * (2 + 2 * len(systems) + 2 * len(planes))]
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
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Server streaming (16-byte messages/s)", ""]
    stream_systems = [s for s in systems if s != "floor"]
    header = "| streams | " + " | ".join(stream_systems) + " | " + " | ".join(
        f"{p} / grpc" for p in planes) + " |"
    lines += [header, "|" + "---|" * (1 + len(stream_systems) + len(planes))]
    for streams in sorted(stream):
        row = [str(streams)]
        row += [fmt(get(stream, streams, s, "msgs_per_s")) for s in stream_systems]
        row += [ratio(get(stream, streams, p, "msgs_per_s"),
                      get(stream, streams, "grpc", "msgs_per_s")) for p in planes]
        lines.append("| " + " | ".join(row) + " |")

    peak = {s: max([b.get("server_peak_rss_mib", 0) for t in (unary, throughput)
                    for row in t.values() for name, b in row.items() if name == s]
                   or [0]) for s in systems}
    lines += ["", "Server peak memory (VmHWM, MiB): " + ", ".join(
        f"{s} {fmt(peak[s])}" for s in systems) + ".", ""]

    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))

    # Plots.
    with open(os.path.join(out_dir, "latency.dat"), "w") as f:
        for s in systems:
            f.write(f'"{s}"\n')
            for payload in sorted(unary):
                v = get(unary, payload, s, "p50_us")
                if v is not None:
                    f.write(f"{payload} {v}\n")
            f.write("\n\n")
    with open(os.path.join(out_dir, "throughput.dat"), "w") as f:
        for s in systems:
            f.write(f'"{s}"\n')
            for key in sorted(k for k in throughput if k[1] == 16):
                v = get(throughput, key, s, "calls_per_s")
                if v is not None:
                    f.write(f"{key[0]} {v}\n")
            f.write("\n\n")
    n = len(systems)
    script = f"""
set terminal svg size 800,480 dynamic background rgb 'white'
set key left top
set grid
set output '{out_dir}/latency.svg'
set title 'Unary latency, p50 (lower is better)'
set logscale xy
set xlabel 'payload (bytes)'
set ylabel 'µs'
plot for [i=0:{n - 1}] '{out_dir}/latency.dat' index i using 1:2 with linespoints title columnheader(1)
set output '{out_dir}/throughput.svg'
set title 'Unary throughput, 16 B payload (higher is better)'
set logscale x 2
unset logscale y
set xlabel 'calls in flight'
set ylabel 'calls/s'
plot for [i=0:{n - 1}] '{out_dir}/throughput.dat' index i using 1:2 with linespoints title columnheader(1)
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


if __name__ == "__main__":
    main()
