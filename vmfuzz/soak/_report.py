"""The morning summary of a soak run: text for the terminal, JSON, and an HTML page.

Everything is read back from the state directory (``run.json``, ``stats.json``, ``findings/``,
``timelines/``, ``coverage.json``), so ``vmfuzz report STATE_DIR`` says the same as the end of
``vmfuzz soak``, also for a run that was killed.  The HTML page is self-contained (inline SVG
plots, inline CSS, no JavaScript, nothing fetched from the network).
"""

from __future__ import annotations

import html
import itertools
import os
from pathlib import Path
from typing import Any

from vmfuzz.soak._config import format_duration
from vmfuzz.soak._files import read_json, write_text
from vmfuzz.soak._findings import group_findings, load_findings, signature_digest
from vmfuzz.soak._schema import CorruptState, check_run, check_stats, read_state
from vmfuzz.soak._svg import svg_chart


def _rel(path: str | None) -> str | None:
    """``path`` relative to the current directory when it lies below it."""
    if not path:
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def summarize(
    state_dir: Path,
    unwritten: list[dict[str, Any]] | None = None,
    write_error: str | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary of the run in ``state_dir`` as JSON data (see ``vmfuzz report --json``),
    with ``unwritten``, the finding records a full disk kept out of ``findings/``, and
    ``run``, the session's own ``run.json`` data (the file may be older: a full disk)."""
    if run is None:
        run = read_state(state_dir / "run.json", check_run)
    if run is None:
        raise CorruptState(f"{state_dir}: not a soak state directory (no run.json)")
    stats = read_state(state_dir / "stats.json", check_stats)
    if stats is None:  # killed before its first write
        stats = {"totals": {}, "series": [], "elapsed": 0.0}
    t = stats.get("totals", {})
    config = run.get("config", {})
    sessions = run.get("sessions", [])
    elapsed = float(stats.get("elapsed", 0.0))
    workers = sessions[-1].get("workers") if sessions else None
    steps = int(t.get("steps", 0))
    examples = int(t.get("examples", 0))
    records = load_findings(state_dir) + list(unwritten or [])
    records.sort(key=lambda r: (r.get("elapsed", 0.0), r.get("record", "")))
    findings = group_findings(records)
    return {
        "state": str(state_dir),
        "run_id": int(run.get("run_id", 0)),
        "elapsed": round(elapsed, 1),
        "sessions": len(sessions),
        "stop": sessions[-1].get("stop") if sessions else None,
        "workers": workers,
        "bugs": config.get("bugs", []),
        "plugins": config.get("plugins", []),
        "ops": config.get("ops"),
        "corpus": config.get("corpus"),
        "examples": examples,
        "steps": steps,
        "campaigns": int(t.get("campaigns", 0)),
        "budget_hits": int(t.get("budget_hits", 0)),
        "schedulers": t.get("schedulers", {}),
        "profiles": t.get("profiles", {}),
        "examples_per_second": round(examples / elapsed, 2) if elapsed else 0.0,
        "steps_per_second": round(steps / elapsed, 1) if elapsed else 0.0,
        "coverage": stats.get("coverage"),
        "findings": findings,
        "pairs": int(t.get("pairs", 0)),
        "new_pairs_last_hour": _last_hour(stats.get("series", []), elapsed),
        "pool": int(t.get("pool", 0)),
        "workers_lost": int(t.get("workers_lost", 0)),
        "dask": sessions[-1].get("dask") if sessions else None,
        "shrink_passes": shrink_passes(records),
        "interrupted": stats.get("interrupted", []),
        "max_worker_rss_mb": _max_rss(stats.get("series", [])),
        "worker_cpu_seconds": round(float(t.get("worker_cpu_seconds", 0.0)), 1),
        "cores_busy": round(float(t.get("worker_cpu_seconds", 0.0)) / elapsed, 2)
        if elapsed else None,
        "steps_per_cpu_second": round(steps / float(t["worker_cpu_seconds"]), 1)
        if t.get("worker_cpu_seconds") else None,
        "cpu_bound": round(
            (float(t.get("worker_cpu_seconds", 0.0)) + float(t.get("worker_wait_seconds", 0.0)))
            / float(t["worker_alive_seconds"]), 3) if t.get("worker_alive_seconds") else None,
        "write_error": write_error,
        "summary": str(state_dir / "summary.txt"),
        "report": str(state_dir / "report.html"),
    }


def shrink_passes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each pass of the post-Hypothesis shrinker did, summed over every failure the run
    shrank (each finding record's ``shrink_passes``), in the shrinker's pass order."""
    total: dict[str, dict[str, Any]] = {}
    for rec in records:
        for p in rec.get("shrink_passes") or []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                continue
            t = total.setdefault(p["name"], {"name": p["name"], "failures": 0, "tried": 0,
                                             "kept": 0, "runs": 0, "seconds": 0.0})
            t["failures"] += 1
            for k in ("tried", "kept", "runs"):
                t[k] += int(p.get(k) or 0)
            t["seconds"] = round(t["seconds"] + float(p.get("seconds") or 0.0), 3)
    return list(total.values())


def _last_hour(series: list[dict[str, Any]], elapsed: float) -> int | None:
    """New interleaving pairs in the last hour of the run (or all of it, if shorter)."""
    pts = [(p["t"], p["pairs"]) for p in series if p.get("pairs") is not None]
    if not pts:
        return None
    before = [n for t, n in pts if t <= elapsed - 3600]
    return int(pts[-1][1] - (before[-1] if before else 0))


def pairs_per_hour(series: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """New interleaving pairs per hour over time, each over a window of at least a minute
    (and a fiftieth of the run): campaigns report their pairs when they end."""
    pts = [(float(p["t"]), int(p["pairs"])) for p in series if p.get("pairs") is not None]
    if len(pts) < 2:
        return []
    window = max(60.0, (pts[-1][0] - pts[0][0]) / 50)
    out = []
    j = 0
    for t, n in pts[1:]:
        while j + 1 < len(pts) and t - pts[j + 1][0] >= window:
            j += 1
        t0, n0 = pts[j]
        if t > t0:
            out.append((t, round((n - n0) * 3600 / (t - t0), 1)))
    return out


def findings_over_time(findings: list[dict[str, Any]], elapsed: float
                       ) -> list[tuple[float, float]]:
    """Cumulative distinct findings: a step at each signature's first hit."""
    times = sorted(float(f.get("elapsed", 0.0)) for f in findings)
    pts: list[tuple[float, float]] = [(0.0, 0.0)]
    for i, t in enumerate(times, 1):
        pts += [(t, float(i - 1)), (t, float(i))]
    pts.append((max(elapsed, pts[-1][0]), float(len(times))))
    return pts


def _max_rss(series: list[dict[str, Any]]) -> float | None:
    vals = [v for s in series for v in (s.get("rss_mb") or {}).values() if v]
    return max(vals) if vals else None


_STOP = {
    "duration": "the duration was reached",
    "interrupted": "interrupted (Ctrl-C / SIGTERM); in-flight shrinking finished",
    "forced": "stopped at once (second Ctrl-C or grace period over)",
    "killed": "the session was killed",
    "disk": "stopped: a file could not be written (a full disk?); the workers finished their "
            "campaign",
    None: "still running, or killed",
}


def summary_text(s: dict[str, Any]) -> str:
    """The morning summary for people."""
    out = []
    sessions = s["sessions"]
    out.append(
        f"vmfuzz soak: {format_duration(s['elapsed'])} in {sessions} "
        f"session{'s' if sessions != 1 else ''}, {_n(s['workers'], 'worker')} "
        f"(state {s['state']})"
    )
    bugs = ", ".join(s["bugs"]) if s["bugs"] else "none (fixed kernel)"
    extra = ""
    if s["plugins"]:
        extra += f"; plugins: {', '.join(s['plugins'])}"
    if s["ops"] is not None:
        extra += f"; operations: {', '.join(s['ops'])}"
    out.append(f"  bugs: {bugs}{extra}")
    out.append(f"  last session: {_STOP.get(s['stop'], s['stop'])}"
               + (f" (Dask cluster {s['dask']})" if s.get("dask") else "")
               + (f"; run identity {s['run_id']}" if s.get("run_id") is not None else ""))
    if s.get("write_error"):
        out.append(f"  cannot write: {s['write_error']}; free space, then continue with "
                   f"vmfuzz soak --resume --state {s['state']}")
    per_worker = s["steps_per_second"] / s["workers"] if s["workers"] else 0.0
    sched = ", ".join(f"{k} {v}" for k, v in sorted(s["schedulers"].items()))
    out.append(
        f"throughput: {s['examples']:,} examples ({s['examples_per_second']:,.1f}/s), "
        f"{s['steps']:,} steps ({s['steps_per_second']:,.0f}/s, {per_worker:,.0f}/s per "
        f"worker), {s['campaigns']} campaigns" + (f" ({sched})" if sched else "")
    )
    if s["cores_busy"] is not None and s["workers"]:
        cpu = s["worker_cpu_seconds"]
        per_cpu = f"; {s['steps'] / cpu:,.0f} steps per worker CPU second" if cpu else ""
        out.append(
            f"  workers kept {s['cores_busy']:.2f} cores busy on average "
            f"({100 * s['cores_busy'] / s['workers']:.0f}% of {_n(s['workers'], 'worker')})"
            f"{per_cpu}"
        )
        bound = s.get("cpu_bound")
        if bound is not None:
            out.append(
                f"  workers were on a CPU or waiting for one {100 * bound:.0f}% of their "
                "lifetime" + (" (CPU-bound: any shortfall above is other processes' use of "
                              "the machine)" if bound > 0.9 else "")
            )
    if s["max_worker_rss_mb"] is not None:
        out.append(f"  largest worker: {s['max_worker_rss_mb']:.0f} MB resident")
    if s.get("pairs"):
        hour = s.get("new_pairs_last_hour")
        out.append(
            f"search: {s['pairs']:,} distinct interleaving pairs met"
            + (f" ({hour:,} new in the last hour)" if hour is not None else "")
            + f"; the shared pool holds {_n(s.get('pool', 0), 'program')}"
        )
    if s.get("workers_lost"):
        out.append(f"  {_n(s['workers_lost'], 'Dask worker')} left during the run (their "
                   "campaigns were run again by the others)")
    cov = s["coverage"]
    if cov and cov.get("sampled_chunks"):
        out.append(
            f"coverage of the model (vmfuzz.kernel): lines {_pct(cov.get('lines'))} "
            f"({cov.get('covered_lines')}/{cov.get('statements')}), branches "
            f"{_pct(cov.get('branches'))} ({cov.get('covered_branches')}/"
            f"{cov.get('branches_total')}), from {cov.get('sampled_chunks', 0)} sampled "
            "chunks of examples"
        )
    else:
        out.append("coverage of the model: not measured (no sampled chunk finished)")
    findings = s["findings"]
    hits = sum(f["hits"] for f in findings)
    if not findings:
        out.append("findings: none")
    else:
        out.append(f"findings: {len(findings)} distinct ({_n(hits, 'hit')})")
    for i, f in enumerate(findings, 1):
        out.append(f"  {i}. {f.get('message')}")
        workers = ", ".join(str(w) for w in f.get("workers", []))
        who = (f"Dask worker {f['dask_worker']}" if f.get("dask_worker")
               else f"worker {f.get('worker')}")
        out.append(
            f"     first after {format_duration(f.get('elapsed', 0))} by {who} "
            f"(seed {f.get('seed')}, {f.get('scheduler')}, "
            f"profile {f.get('profile')}); {f['hits']} hit{'s' if f['hits'] != 1 else ''} "
            f"by worker{'s' if len(f.get('workers', [])) != 1 else ''} {workers}"
        )
        sh = f.get("shrunk")
        if sh:
            threads = sh.get("threads")
            extra = f" ({threads} threads in all)" if threads not in (None, sh.get("tasks")) else ""
            out.append(
                f"     shrunk to {sh.get('tasks')} tasks{extra}, {sh.get('ops')} operations, "
                f"{sh.get('steps')} steps, {sh.get('preemptions')} preemptions"
                + (" (minimal)" if f.get("minimal_preemptions") else "")
            )
        if f.get("corpus"):
            out.append(f"     corpus:   {_rel(f['corpus'])}")
            if f.get("corpus_error"):
                out.append(f"     (a fallback folder: the corpus could not be written: "
                           f"{f['corpus_error']}; move the case into the corpus)")
            out.append(f"     replay:   vmfuzz replay {_rel(f['corpus'])}")
        if f.get("timeline"):
            out.append(f"     timeline: {_rel(f['timeline'])}")
        if f.get("error"):
            out.append(f"     not saved: {f['error']}")
        if f.get("case_text"):
            out.append("     the case file (save it as NAME.json):")
            out.extend("       " + line for line in str(f["case_text"]).splitlines())
        if f.get("record_error"):
            out.append(f"     (its record could not be written to findings/: "
                       f"{f['record_error']})")
        if f.get("kind") == "crash":
            out.append(f"     record:   {_rel(f.get('record'))}")
    if s.get("shrink_passes"):
        out.append("shrink passes (summed over the failures shrunk): tried / kept / runs / CPU s")
        for p in s["shrink_passes"]:
            out.append(f"  {p['name']:<20} {p['tried']:>7} {p['kept']:>5} {p['runs']:>8} "
                       f"{p['seconds']:>8.1f}")
    if s["interrupted"]:
        out.append(
            f"interrupted campaigns ({len(s['interrupted'])}; re-run one with "
            "vmfuzz.soak.rerun_campaign(config, seed, scheduler, profile)):"
        )
        for c in s["interrupted"][:10]:
            out.append(
                f"  seed {c.get('seed')} ({c.get('scheduler')}, profile {c.get('profile')}) "
                f"on worker {c.get('slot')}: {c.get('why')}"
            )
        if len(s["interrupted"]) > 10:
            out.append(f"  ... and {len(s['interrupted']) - 10} more (stats.json)")
    if s["report"] is not None:
        out.append(f"report: {_rel(s['report'])}")
    return "\n".join(out) + "\n"


def _n(n: int | None, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _pct(v: float | None) -> str:
    return f"{v:.1f}%" if v is not None else "n/a"


def _ensure_timelines(state_dir: Path, findings: list[dict[str, Any]]) -> None:
    """Draw the timeline of a saved finding whose timeline file is missing (a kill between
    the save and the drawing, or a deleted file)."""
    for f in findings:
        corpus = f.get("corpus")
        if not corpus or not Path(corpus).is_file():
            continue
        out = state_dir / "timelines" / f"{Path(corpus).stem}.txt"
        if f.get("timeline") and Path(f["timeline"]).is_file():
            continue
        try:
            from vmfuzz.corpus import attempt, load
            from vmfuzz.timeline import render_attempt

            cc = load(corpus)
            text = render_attempt(cc, attempt(cc), width=120)
        except Exception as e:  # e.g. an operation of a plugin that is gone
            text = f"(no timeline: {type(e).__name__}: {e})\n"
        write_text(out, text)
        f["timeline"] = str(out.resolve())


def write_reports(
    state_dir: Path,
    unwritten: list[dict[str, Any]] | None = None,
    write_error: str | None = None,
    run: dict[str, Any] | None = None,
    refresh: float | None = None,
) -> dict[str, Any]:
    """Write ``summary.txt`` and ``report.html``; the summary as JSON data (with ``text``).

    A report file that cannot be written (a full disk) is named in ``write_error``: the
    summary is still returned, for the caller to print.
    """
    s = summarize(state_dir, unwritten, write_error, run)
    try:
        _ensure_timelines(state_dir, s["findings"])
        write_text(state_dir / "summary.txt", summary_text(s))
        write_text(state_dir / "report.html", render_html(state_dir, s, refresh))
    except OSError as e:
        s["write_error"] = s["write_error"] or f"{e.filename}: {e.strerror or e}"
        s["summary"] = s["report"] = None
    s["text"] = summary_text(s)
    return s


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
svg .t { font-size: 13px; font-weight: 600; } svg .g { stroke: #e4e4e4; }
svg .yl { font-size: 11px; text-anchor: end; fill: #555; }
svg .xl { font-size: 11px; text-anchor: middle; fill: #555; }
svg .al { font-size: 11px; text-anchor: middle; fill: #555; }
svg .lg { font-size: 11px; fill: #333; } svg .m { stroke: #d62728; stroke-dasharray: 3 3; }
.bad { color: #b00; } .ok { color: #070; }
"""


def render_html(state_dir: Path, s: dict[str, Any], refresh: float | None = None) -> str:
    """The report page: summary, plots over time, findings with their timelines, counts;
    with ``refresh`` (seconds), the browser reloads it that often (``vmfuzz report --watch``)."""
    e = html.escape
    stats = read_json(state_dir / "stats.json") or {}
    series = stats.get("series", [])
    x_end = max([float(s.get("elapsed") or 0.0)] + [float(p["t"]) for p in series])
    markers = [
        (float(f.get("elapsed", 0)), f"finding: {f.get('message')}") for f in s["findings"]
    ]
    rate = [
        (p["t"], p["steps_per_second"]) for p in series if p.get("steps_per_second") is not None
    ]
    ex_rate = [
        (p["t"], p["examples_per_second"]) for p in series
        if p.get("examples_per_second") is not None
    ]
    lines = [(p["t"], p["lines"]) for p in series if p.get("lines") is not None]
    branches = [(p["t"], p["branches"]) for p in series if p.get("branches") is not None]
    cores, wanted = [], []
    for a, b in itertools.pairwise(series):
        if b.get("cpu") is not None and a.get("cpu") is not None and b["t"] > a["t"]:
            dt = b["t"] - a["t"]
            cores.append((b["t"], round((b["cpu"] - a["cpu"]) / dt, 3)))
            if b.get("wait") is not None and a.get("wait") is not None:
                w = b["cpu"] - a["cpu"] + b["wait"] - a["wait"]
                wanted.append((b["t"], round(w / dt, 3)))
    load = [(p["t"], p["load"]) for p in series if p.get("load") is not None]
    rss_max, rss_mean = [], []
    for p in series:
        vals = [v for v in (p.get("rss_mb") or {}).values() if v]
        if vals:
            rss_max.append((p["t"], max(vals)))
            rss_mean.append((p["t"], round(sum(vals) / len(vals), 1)))
    rss = [("largest worker", rss_max), ("mean of workers", rss_mean)]
    pairs = [(p["t"], p["pairs"]) for p in series if p.get("pairs") is not None]
    pool = [(p["t"], p["pool"]) for p in series if p.get("pool") is not None]
    x: dict[str, Any] = {"x_max": x_end}
    meta = f'<meta http-equiv="refresh" content="{round(refresh)}">' if refresh else ""
    body = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{meta}',
        f"<title>vmfuzz soak report: {e(s['state'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>vmfuzz soak report: {e(s['state'])}</h1>",
        f"<pre>{e(summary_text(s))}</pre>",
        "<h2>The search (every chart shares one time axis: the run's elapsed time)</h2>",
        svg_chart("distinct findings (cumulative)",
                  [("findings", findings_over_time(s["findings"], x_end))],
                  y_label="findings", markers=markers, **x),
        svg_chart("interleaving pairs met (distinct, all campaigns)", [("pairs", pairs)],
                  y_label="pairs", markers=markers, **x),
        svg_chart("new interleaving pairs per hour", [("pairs/h", pairs_per_hour(series))],
                  y_label="pairs/h", markers=markers, **x),
        svg_chart("the shared pool (programs)", [("programs", pool)], y_label="programs",
                  **x),
        "<h2>Throughput</h2>",
        svg_chart("scheduler steps per second (all workers)", [("steps/s", rate)],
                  y_label="steps/s", markers=markers, **x),
        svg_chart("examples per second (all workers)", [("examples/s", ex_rate)],
                  y_label="examples/s", markers=markers, **x),
        svg_chart("worker CPU (cores)", [("busy", cores), ("busy + waiting for CPU", wanted),
                                           ("load average", load)], y_label="cores", **x),
        "<h2>Model coverage (vmfuzz.kernel, sampled chunks of examples)</h2>",
        svg_chart("coverage over time", [("lines %", lines), ("branches %", branches)],
                  y_label="%", y_max=100.0, markers=markers, **x),
        "<h2>Worker memory</h2>",
        svg_chart("worker resident set size", rss, y_label="MB", **x),
    ]
    body.append("<h2>Findings</h2>")
    if not s["findings"]:
        body.append("<p class=ok>No findings.</p>")
    for i, f in enumerate(s["findings"], 1):
        anchor = f"f-{signature_digest(f['signature'])}"
        body.append(f'<h3 id="{anchor}" class=bad>{i}. {e(str(f.get("message")))}</h3>')
        facts = [
            ("signature", f["signature"]),
            ("first found", f"after {format_duration(f.get('elapsed', 0))} by worker "
                            f"{f.get('worker')}"),
            ("campaign", f"seed {f.get('seed')}, scheduler {f.get('scheduler')}, "
                         f"profile {f.get('profile')}"),
            ("hits", f"{f['hits']} (workers {', '.join(str(w) for w in f.get('workers', []))})"),
            ("corpus", _rel(f.get("corpus")) or "-"),
            ("timeline", _rel(f.get("timeline")) or "-"),
        ]
        if f.get("error"):
            facts.append(("not saved", f["error"]))
        body.append("<table>")
        body.extend(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
        body.append("</table>")
        text = _read(f.get("timeline")) or f.get("traceback")
        if text:
            body.append(f"<pre>{e(text)}</pre>")
    if s.get("shrink_passes"):
        body.append("<h2>Shrink passes (summed over the failures shrunk)</h2><table>")
        body.append("<tr><th>pass</th><th>failures</th><th>tried</th><th>kept</th>"
                    "<th>runs</th><th>CPU seconds</th></tr>")
        body.extend(
            f"<tr><td>{e(p['name'])}</td><td>{p['failures']}</td><td>{p['tried']}</td>"
            f"<td>{p['kept']}</td><td>{p['runs']}</td><td>{p['seconds']}</td></tr>"
            for p in s["shrink_passes"]
        )
        body.append("</table>")
    t = stats.get("totals", {})
    body.append("<h2>Operations</h2>")
    body.append(_count_table(t.get("ops", {}), "operation", "spawned"))
    body.append("<h2>Yield labels (scheduling points reached)</h2>")
    body.append(_count_table(t.get("labels", {}), "label", "steps", limit=200))
    body.append(_coverage_table(state_dir))
    body.append("</body></html>")
    return "\n".join(body) + "\n"


def _read(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def _count_table(counts: dict[str, int], what: str, unit: str, limit: int | None = None) -> str:
    if not counts:
        return "<p>none recorded</p>"
    e = html.escape
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [f"<table><tr><th>{e(what)}</th><th>{e(unit)}</th></tr>"]
    shown = items[:limit] if limit else items
    rows.extend(f"<tr><td>{e(k)}</td><td class=n>{v:,}</td></tr>" for k, v in shown)
    rows.append("</table>")
    if limit and len(items) > limit:
        rows.append(f"<p>... {len(items) - limit} more in stats.json</p>")
    rarest = [k for k, _ in items[-10:]]
    if len(items) > 10:
        rows.append(f"<p>rarest: {e(', '.join(reversed(rarest)))}</p>")
    return "\n".join(rows)


def _coverage_table(state_dir: Path) -> str:
    data = read_json(state_dir / "coverage.json")
    if not isinstance(data, dict) or "files" not in data:
        return ""
    e = html.escape
    rows = [
        "<h2>Coverage per model file</h2>",
        "<table><tr><th>file</th><th>lines</th><th>branches</th><th>missing lines</th></tr>",
    ]
    for name, f in sorted(data["files"].items()):
        sm = f.get("summary", {})
        st, cl = sm.get("num_statements", 0), sm.get("covered_lines", 0)
        nb, cb = sm.get("num_branches", 0), sm.get("covered_branches", 0)
        missing = f.get("missing_lines", [])
        miss = ", ".join(str(x) for x in missing[:30]) + (" ..." if len(missing) > 30 else "")
        rows.append(
            f"<tr><td>{e(_rel(name) or name)}</td>"
            f"<td class=n>{cl}/{st} {_pct(100 * cl / st if st else None)}</td>"
            f"<td class=n>{cb}/{nb} {_pct(100 * cb / nb if nb else None)}</td>"
            f"<td>{e(miss)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


# ============================================================================ several runs
def merge_runs(state_dirs: list[Path]) -> dict[str, Any]:
    """One summary of several runs' state folders (several machines' soaks): totals summed,
    findings grouped by signature across the runs, interleaving pairs and pool programs
    counted once however many runs met them.  ``runs`` holds each run's own summary."""
    from vmfuzz.soak._pool import pool_keys
    from vmfuzz.soak._state import read_pairs

    runs = [summarize(d) for d in state_dirs]
    records = []
    pairs: set[tuple[str, str]] = set()
    pool: set[str] = set()
    for d, r in zip(state_dirs, runs, strict=True):
        for rec in load_findings(d):
            rec["state"] = str(d)
            records.append(rec)
        pairs |= read_pairs(d)
        pool |= pool_keys(d)
        r["findings_count"] = len(r["findings"])
    records.sort(key=lambda r: (r.get("elapsed", 0.0), r.get("record", "")))
    findings = group_findings(records)
    for f in findings:
        f["states"] = sorted({str(r["state"]) for r in records
                              if r["signature"] == f["signature"]})
    ids: dict[int, list[str]] = {}
    for r in runs:
        ids.setdefault(r["run_id"], []).append(r["state"])
    return {
        "states": [str(d) for d in state_dirs],
        "elapsed": max(r["elapsed"] for r in runs),
        "examples": sum(r["examples"] for r in runs),
        "steps": sum(r["steps"] for r in runs),
        "campaigns": sum(r["campaigns"] for r in runs),
        "worker_cpu_seconds": round(sum(r["worker_cpu_seconds"] for r in runs), 1),
        "pairs": len(pairs),
        "pool": len(pool),
        "findings": findings,
        "shared_identities": {str(k): v for k, v in ids.items() if len(v) > 1},
        "runs": runs,
    }


def merged_text(m: dict[str, Any]) -> str:
    """The summary of several runs for people."""
    out = [f"vmfuzz report: {len(m['runs'])} runs, the longest {format_duration(m['elapsed'])}"]
    for r in m["runs"]:
        out.append(
            f"  {r['state']}: run identity {r['run_id']}, {format_duration(r['elapsed'])}, "
            f"{r['campaigns']} campaigns, {r['steps']:,} steps, {r['pairs']:,} pairs, "
            f"{_n(r['findings_count'], 'finding')}"
        )
    for rid, states in m["shared_identities"].items():
        out.append(f"  warning: {', '.join(states)} share the run identity {rid}: their "
                   "campaigns repeat each other (give each run its own --seed)")
    out.append(
        f"together: {m['campaigns']} campaigns, {m['examples']:,} examples, "
        f"{m['steps']:,} steps, {m['worker_cpu_seconds']:,.0f} worker CPU seconds; "
        f"{m['pairs']:,} distinct interleaving pairs, {_n(m['pool'], 'distinct pool program')}"
    )
    if not m["findings"]:
        out.append("findings: none")
    else:
        out.append(f"findings: {len(m['findings'])} distinct")
    for i, f in enumerate(m["findings"], 1):
        out.append(f"  {i}. {f.get('message')}")
        out.append(f"     first after {format_duration(f.get('elapsed', 0))} in "
                   f"{f.get('state')} (seed {f.get('seed')}); {_n(f['hits'], 'hit')} in "
                   f"{', '.join(f['states'])}")
        if f.get("corpus"):
            out.append(f"     replay:   vmfuzz replay {_rel(f['corpus'])}")
    return "\n".join(out) + "\n"


def render_merged_html(m: dict[str, Any]) -> str:
    """The page of several runs: every run's curves on one time axis, findings merged."""
    e = html.escape
    serieses = [(r["state"], (read_json(Path(r["state"]) / "stats.json") or {}).get("series", []))
                for r in m["runs"]]
    x: dict[str, Any] = {"x_max": max([m["elapsed"]] + [float(p["t"]) for _, ss in serieses
                                                         for p in ss])}

    def per_run(key: str) -> list[tuple[str, list[tuple[float, float]]]]:
        return [(name, [(p["t"], p[key]) for p in ss if p.get(key) is not None])
                for name, ss in serieses]

    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>vmfuzz report: {len(m['runs'])} runs</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>vmfuzz report: {len(m['runs'])} runs</h1>",
        f"<pre>{e(merged_text(m))}</pre>",
        "<h2>The search (one time axis: each run's elapsed time)</h2>",
        svg_chart("distinct findings (cumulative)",
                  [(r["state"], findings_over_time(r["findings"], r["elapsed"]))
                   for r in m["runs"]], y_label="findings", **x),
        svg_chart("interleaving pairs met (distinct, per run)", per_run("pairs"),
                  y_label="pairs", **x),
        svg_chart("new interleaving pairs per hour",
                  [(name, pairs_per_hour(ss)) for name, ss in serieses], y_label="pairs/h",
                  **x),
        svg_chart("the shared pool (programs, per run)", per_run("pool"), y_label="programs",
                  **x),
        svg_chart("scheduler steps per second", per_run("steps_per_second"),
                  y_label="steps/s", **x),
        "<h2>Findings</h2>",
    ]
    if not m["findings"]:
        body.append("<p class=ok>No findings.</p>")
    for i, f in enumerate(m["findings"], 1):
        body.append(f"<h3 class=bad>{i}. {e(str(f.get('message')))}</h3>")
        body.append(f"<p>{e(f['signature'])}: {f['hits']} hits in "
                    f"{e(', '.join(f['states']))}; corpus {e(_rel(f.get('corpus')) or '-')}</p>")
        text = _read(f.get("timeline"))
        if text:
            body.append(f"<pre>{e(text)}</pre>")
    body.append("</body></html>")
    return "\n".join(body) + "\n"
