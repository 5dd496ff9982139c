"""Measurement loop and report of the comparison benchmark (driven by run.sh).

    python3 bench.py measure --scenarios FILE --runs OUT.jsonl --rounds R --duration D ...
    python3 bench.py report --runs OUT.jsonl --out DIR --meta META.json

`measure` runs wrk once per scenario per round, all scenarios in the same order every round,
so each scenario's reference is measured seconds before or after it. Around each wrk run it
reads /proc: the CPU time (utime + stime) of the contender's process group, which gives its
own CPU cost per request, and the machine's busy time minus everything the benchmark runs,
which tells how much other work disturbed the run.

`report` takes the median over rounds of req/s and own CPU per request, and the median of
per-round ratios to the references, and writes results.md (also printed) and results.json.
"""

import argparse
import json
import os
import pathlib
import re
import resource
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")

# Each row's references: (column label, reference contender) per kind of row.
NOAUTH_REFS = (("haproxy", "haproxy-proxy"), ("bare", "bare-pingora"))
CACHED_CPU_TARGET = 1.1


# ---------------------------------------------------------------- /proc sampling

def group_cpu_seconds(groups):
    """utime + stime, in seconds, of every live process in each process group."""
    totals = {g: 0 for g in groups}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2:].split()
        pgrp = int(fields[2])
        if pgrp in totals:
            totals[pgrp] += int(fields[11]) + int(fields[12])
    return {g: t / HZ for g, t in totals.items()}


def machine_busy_seconds():
    """user + nice + system + irq + softirq over all CPUs (not idle, iowait or steal)."""
    with open("/proc/stat") as f:
        cols = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in cols[1:8])
    return (user + nice + system + irq + softirq) / HZ


def self_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------- measure

def read_scenarios(path):
    """TSV: id, contender, scenario, url, token file, process group."""
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        if not line.strip():
            continue
        sid, contender, scenario, url, tokens, pgid = line.split("\t")
        rows.append(dict(id=sid, contender=contender, scenario=scenario, url=url,
                         tokens=tokens, pgid=int(pgid)))
    return rows


def run_wrk(args, url, tokens, seconds, groups):
    """One closed-loop wrk run; returns wrk's figures and the CPU accounting around it."""
    cmd = []
    if args.wrk_cpus:
        cmd += ["taskset", "-c", args.wrk_cpus]
    cmd += ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{seconds}s", "--timeout", "5s",
            "-s", args.lua, url, "--", tokens]
    before_groups = group_cpu_seconds(groups)
    before_busy, before_self, before_children = (
        machine_busy_seconds(), self_cpu_seconds(), children_cpu_seconds())
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=seconds + 30, check=False)
    wall = time.monotonic() - started
    after_groups = group_cpu_seconds(groups)
    busy = machine_busy_seconds() - before_busy
    ours = ((self_cpu_seconds() - before_self) + (children_cpu_seconds() - before_children)
            + sum(after_groups[g] - before_groups[g] for g in groups))
    found = re.search(r"^BENCHJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        sys.exit(f"bench: wrk failed against {url} (exit {proc.returncode}):\n{proc.stdout}")
    res = json.loads(found.group(1))
    res["wall_s"] = round(wall, 3)
    res["group_cpu_s"] = {str(g): round(after_groups[g] - before_groups[g], 4) for g in groups}
    # Work the benchmark did not start, in % of one core (an estimate: tick accounting).
    res["other_load_pct"] = round(max(0.0, busy - ours) / wall * 100, 1)
    return res


def measure(args):
    scenarios = read_scenarios(args.scenarios)
    groups = sorted({s["pgid"] for s in scenarios} | {int(g) for g in args.groups.split(",") if g})
    # Warm-up: every contender once, on its last scenario (for a JWT contender, the token
    # route), with every token of the run so that caches and connection pools start warm.
    last = {}
    for s in scenarios:
        last[s["contender"]] = s
    for contender, s in last.items():
        print(f"[bench] warm-up {contender} ({args.warmup}s)", file=sys.stderr)
        run_wrk(args, s["url"], args.warmup_tokens, args.warmup, groups)

    with open(args.runs, "w") as out:
        for rnd in range(1, args.rounds + 1):
            for s in scenarios:
                res = run_wrk(args, s["url"], s["tokens"], args.duration, groups)
                own = res["group_cpu_s"][str(s["pgid"])]
                reqs = res["requests"]
                rec = dict(round=rnd, id=s["id"], contender=s["contender"],
                           scenario=s["scenario"], rps=reqs / (res["duration_us"] / 1e6),
                           own_cpu_us_per_req=(own * 1e6 / reqs) if reqs else None, **res)
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(f"[bench] round {rnd}/{args.rounds} {s['id']:<28} {rec['rps']:>9,.0f} req/s"
                      f"  own CPU {fmt(rec['own_cpu_us_per_req'], 1)} µs/req"
                      f"  other load {res['other_load_pct']}%", file=sys.stderr)


# ---------------------------------------------------------------- report

def fmt(x, digits=0, suffix=""):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}{suffix}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def references(row_id, contender, scenario):
    """Column label -> reference row id, for one row."""
    refs = {}
    if scenario == "noauth":
        for label, ref in NOAUTH_REFS:
            refs[label] = f"{ref}/noauth"
    else:
        refs["haproxy"] = f"haproxy-jwt/{scenario}"
    if contender.startswith("portcullis") and scenario != "noauth":
        refs["own_noauth"] = ("portcullis-baseline/noauth" if contender == "portcullis-baseline"
                              else "portcullis/noauth")
    if contender == "portcullis":
        refs["baseline"] = f"portcullis-baseline/{scenario}"
    return {k: v for k, v in refs.items() if v != row_id}


def summarize(runs):
    by_id, order = {}, []
    for r in runs:
        if r["id"] not in by_id:
            order.append(r["id"])
        by_id.setdefault(r["id"], {})[r["round"]] = r
    summary = {}
    for sid in order:
        rounds = by_id[sid]
        first = next(iter(rounds.values()))
        rps = [r["rps"] for r in rounds.values()]
        row = dict(contender=first["contender"], scenario=first["scenario"], rounds=len(rps),
                   rps_median=median(rps),
                   rps_spread_pct=(50 * (max(rps) - min(rps)) / median(rps)) if median(rps) else None,
                   p99_ms_median=median([r["p99_us"] / 1000 for r in rounds.values()]),
                   own_cpu_us_per_req=median([r["own_cpu_us_per_req"] for r in rounds.values()]),
                   non_2xx=sum(r["status_errors"] for r in rounds.values()),
                   socket_errors=sum(r["socket_errors"] for r in rounds.values()),
                   other_load_pct_max=max(r["other_load_pct"] for r in rounds.values()),
                   ratios={})
        for label, ref in references(sid, first["contender"], first["scenario"]).items():
            if ref not in by_id:
                continue
            rps_ratio, cpu_ratio = [], []
            for rnd, r in rounds.items():
                other = by_id[ref].get(rnd)
                if other is None:
                    continue
                rps_ratio.append(r["rps"] / other["rps"] if other["rps"] else None)
                # direct's own CPU is the upstream's, not a proxy's: no CPU ratio for it
                if (r["contender"] != "direct" and r["own_cpu_us_per_req"]
                        and other["own_cpu_us_per_req"]):
                    cpu_ratio.append(r["own_cpu_us_per_req"] / other["own_cpu_us_per_req"])
            row["ratios"][label] = dict(ref=ref, rps=median(rps_ratio), cpu=median(cpu_ratio))
        summary[sid] = row
    return order, summary


def render(meta, order, summary):
    m = meta
    lines = [
        "# Portcullis comparison benchmark",
        "",
        f"- Date: {m['date']}; {m['nproc']} CPUs, {m['cpu_model']}; kernel {m['kernel']}",
        f"- Versions: nginx {m['versions']['nginx']}, HAProxy {m['versions']['haproxy']}, "
        f"wrk {m['versions']['wrk']}; Portcullis commit {m['commit']} (`{m['portcullis_bin']}`)",
        f"- Load: wrk -t{m['wrk_threads']} -c{m['conns']}, closed loop; {m['rounds']} rounds x "
        f"{m['duration']} s, every scenario once per round in the order below; "
        f"{m['warmup']} s warm-up per contender; {m['layout']}",
        *([f"- Both Portcullis instances hold {m['revocations']:,} unrelated revocations"]
          if m.get("revocations") else []),
        *([f"- portcullis and portcullis-nocache export spans at sample_ratio {m['tracing_ratio']}"
           " (portcullis-baseline does not)"] if m.get("tracing_ratio") else []),
        "",
        "| scenario | req/s | spread | p99 ms | × HAProxy | × bare Pingora | own CPU µs/req "
        "| CPU × HAProxy | CPU × bare Pingora | CPU × own noauth | non-2xx | other load % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sid in order:
        row = summary[sid]
        ratio = row["ratios"]

        def cell(label, key):
            r = ratio.get(label)
            return fmt(r[key], 2, "×") if r else ""

        lines.append(
            f"| {sid} | {fmt(row['rps_median'])} | ±{fmt(row['rps_spread_pct'], 1)}% "
            f"| {fmt(row['p99_ms_median'], 2)} | {cell('haproxy', 'rps')} | {cell('bare', 'rps')} "
            f"| {fmt(row['own_cpu_us_per_req'], 1)} | {cell('haproxy', 'cpu')} | {cell('bare', 'cpu')} "
            f"| {cell('own_noauth', 'cpu')} | {row['non_2xx'] + row['socket_errors']} "
            f"| {fmt(row['other_load_pct_max'], 0)} |")
    lines += [
        "",
        "Medians over the rounds. Spread: ± half the min–max range of req/s. × columns: the median "
        "of per-round ratios of this row to its reference in the same round: HAProxy is "
        "haproxy-proxy for noauth rows and haproxy-jwt of the same scenario for JWT rows; req/s "
        "above 1 is faster, CPU below 1 is cheaper. Own CPU: utime + stime of the contender's "
        "processes per request, from /proc (for direct, nginx's own cost as the upstream). "
        "`*-1`: one token; `*-N`: "
        f"{m['n_tokens']} distinct tokens (portcullis keeps them all in its token cache after the "
        "warm-up; portcullis-nocache verifies every request). Other load: the machine's busy time "
        "not spent by anything the benchmark started, at most over the rounds.",
        "",
    ]
    verdicts = []
    for sid in order:
        base = summary[sid]["ratios"].get("baseline")
        if base and base["cpu"]:
            verdicts.append(f"- {sid}: own CPU {base['cpu']:.2f}×, req/s {base['rps']:.2f}× "
                            f"the baseline build (BASELINE_BIN), per-round medians")
    for sid in order:
        row = summary[sid]
        own = row["ratios"].get("own_noauth")
        if row["contender"] == "portcullis" and row["scenario"].endswith("-1") and own and own["cpu"]:
            ok = own["cpu"] <= CACHED_CPU_TARGET
            verdicts.append(f"- {sid}: own CPU {own['cpu']:.2f}× portcullis/noauth "
                            f"(target ≤ {CACHED_CPU_TARGET}×): {'met' if ok else 'MISSED'}")
    if verdicts:
        lines += ["Cached authentication against the plain proxy path:", ""] + verdicts + [""]
    noisy = [sid for sid in order if summary[sid]["other_load_pct_max"] > 15]
    if noisy:
        lines += [f"Warning: other work used more than 15% of a core during some rounds of "
                  f"{len(noisy)} scenario(s); req/s is disturbed, own CPU less so.", ""]
    errors = [sid for sid in order if summary[sid]["non_2xx"] + summary[sid]["socket_errors"]]
    if errors:
        lines += [f"Warning: non-2xx answers or socket errors in: {', '.join(errors)}.", ""]
    return "\n".join(lines)


def tool_version(cmd, pattern):
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(pattern, proc.stdout)
    return found.group(1) if found else "unknown"


def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def meta(args):
    info = json.loads(pathlib.Path(args.meta).read_text())
    info.update(
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        nproc=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        kernel=os.uname().release,
        versions=dict(
            nginx=tool_version(["nginx", "-v"], r"nginx/(\S+)"),
            haproxy=tool_version(["haproxy", "-v"], r"version (\S+)"),
            wrk=tool_version(["wrk", "-v"], r"wrk (?:debian/)?(\S+)"),
        ),
    )
    return info


def report(args):
    runs = [json.loads(line) for line in pathlib.Path(args.runs).read_text().splitlines() if line]
    info = meta(args)
    order, summary = summarize(runs)
    text = render(info, order, summary)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(
        dict(meta=info, order=order, summary=summary, rounds=runs), indent=1) + "\n")
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--scenarios", required=True)
    m.add_argument("--runs", required=True)
    m.add_argument("--rounds", type=int, required=True)
    m.add_argument("--duration", type=int, required=True)
    m.add_argument("--warmup", type=int, required=True)
    m.add_argument("--warmup-tokens", required=True)
    m.add_argument("--conns", type=int, default=32)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--lua", required=True)
    m.add_argument("--wrk-cpus", default="")
    m.add_argument("--groups", default="", help="other process groups the benchmark started")
    r = sub.add_parser("report")
    r.add_argument("--runs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--meta", required=True)
    args = p.parse_args()
    measure(args) if args.cmd == "measure" else report(args)


if __name__ == "__main__":
    main()
