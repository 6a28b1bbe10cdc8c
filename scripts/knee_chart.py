#!/usr/bin/env python3
"""Charts for scripts/knee.sh, as small SVGs (text kept as text, no embedded fonts).

Usage:
  scripts/knee_chart.py sweep SUMMARY.json OUT.svg   the open-loop sweep: p50 and p99 latency
                                                     against the offered rate, per phase, the
                                                     p99 limit and each phase's knee
  scripts/knee_chart.py overload DIR OUT.svg         the overload run in DIR (bench-runs/
                                                     overload-STAMP/): the background load's
                                                     per-second p99, the rush's ok and shed (503)
                                                     answers per second, and the RSS samples

matplotlib is not a dependency of the project: on first use this installs a pinned version into
tools/py/ (git-ignored) with pip and imports it from there. Exit status 2 on bad input.
"""

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY_DIR = os.path.join(ROOT, "tools", "py")
# Pinned, matplotlib and everything it needs (installed with --no-deps: the same set on every
# machine): each has a wheel for CPython 3.11 on x86_64 and on aarch64 (manylinux), and pip takes
# only wheels, so nothing is compiled here.
REQUIREMENTS = [
    "matplotlib==3.9.2",
    "numpy==2.1.3",
    "contourpy==1.3.0",
    "cycler==0.12.1",
    "fonttools==4.54.1",
    "kiwisolver==1.4.7",
    "packaging==24.1",
    "pillow==10.4.0",
    "pyparsing==3.1.4",
    "python-dateutil==2.9.0.post0",
    "six==1.16.0",
]


def fail(message):
    print(f"knee_chart: {message}", file=sys.stderr)
    sys.exit(2)


def load_matplotlib():
    """pyplot from tools/py/, installing it there first if it is not (or not the pinned one)."""
    sys.path.insert(0, PY_DIR)
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(PY_DIR, ".mplconfig"))
    wanted = REQUIREMENTS[0].split("==")[1]
    try:
        import matplotlib

        if matplotlib.__version__ != wanted:
            raise ImportError(f"matplotlib {matplotlib.__version__}, not {wanted}")
    except ImportError:
        print(f"knee_chart: installing {REQUIREMENTS[0]} into {os.path.relpath(PY_DIR, ROOT)}/ (once)", file=sys.stderr)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-warn-conflicts", "--only-binary=:all:", "--no-deps", "--upgrade", "--target", PY_DIR,
                   *REQUIREMENTS]
        # pip's warning about root is for installs into the system, not into tools/py.
        env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore")
        if subprocess.run(command, env=env).returncode != 0:
            fail("installing matplotlib failed (pip needs PyPI); the data is still in the JSON files")
        for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
            del sys.modules[name]
        import importlib

        importlib.invalidate_caches()
        import matplotlib
    matplotlib.use("svg")
    matplotlib.rcParams.update({
        "svg.fonttype": "none",  # text as <text>, not paths: a few KiB instead of hundreds
        "svg.hashsalt": "tigerfans",  # stable ids: the same data gives the same file
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })
    import matplotlib.pyplot as plt

    return plt


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")


def machine_text(machine):
    if not machine:
        return "unknown machine"
    cores = machine.get("cores")
    model = machine.get("cpu_model") or "unknown CPU"
    return f"{cores} cores, {model}" if cores else model


def log_ms_axis(plt, ax):
    """A log axis of milliseconds labelled 1, 2, 5, 10, 20, 50, ...: a narrow range still has labels."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def save(fig, out):
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None})
    print(f"knee_chart: wrote {out} ({os.path.getsize(out) / 1024:.0f} KiB)", file=sys.stderr)


def sweep(summary_path, out):
    summary = read_json(summary_path)
    phases = summary.get("phases")
    if not isinstance(phases, dict) or not phases:
        fail(f"{summary_path} has no phases")
    limit = summary.get("settings", {}).get("p99_limit_ms", 50)
    plt = load_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (phase, data) in enumerate(phases.items()):
        steps = data.get("steps") or []
        if not steps:
            continue
        color = colors[i % len(colors)]
        # A step without a success has no latency: leave it out of the lines (None is a gap).
        rates = [s["rate"] for s in steps]
        p50 = [s["p50_ms"] if s.get("ok", 1) > 0 and s["p50_ms"] > 0 else None for s in steps]
        p99 = [s["p99_ms"] if s.get("ok", 1) > 0 and s["p99_ms"] > 0 else None for s in steps]
        ax.plot(rates, [float("nan") if v is None else v for v in p99], "-", color=color, label=f"{phase} p99")
        ax.plot(rates, [float("nan") if v is None else v for v in p50], "--", color=color, alpha=0.7,
                label=f"{phase} p50")
        for s, v in zip(steps, p99):
            if v is not None:
                ax.plot(s["rate"], v, "o" if s["passed"] else "x", color=color, markersize=4)
                # A step can fail on errors (503s: shed) with its p99 within the limit: say so.
                if s.get("errors"):
                    ax.annotate(f"{s['errors']:,} err", (s["rate"], v), textcoords="offset points", xytext=(3, 4),
                                color=color, fontsize=6)
        knee = data.get("knee")
        if knee is not None:
            at = next((v for s, v in zip(steps, p99) if s["rate"] == knee), None)
            if at is not None:
                ax.plot(knee, at, "o", markersize=11, markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.5)
                ax.annotate(f"{phase} knee\n{knee:,.0f}/s", (knee, at), textcoords="offset points", xytext=(6, -22),
                            color=color, fontsize=8)
    ax.axhline(limit, linestyle=":", color="black", linewidth=1, label=f"p99 limit {limit:g} ms")
    log_ms_axis(plt, ax)
    ax.set_xlabel("offered rate (operations/s, open loop)")
    ax.set_ylabel("latency (ms, from when each was due)")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    date = summary.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    settings = summary.get("settings", {})
    ax.set_title(f"tigerfans knee, {date}: {machine_text(summary.get('machine'))}\n"
                 f"{settings.get('duration_s', '?')} s per step, {settings.get('concurrency', '?')} connections, "
                 f"a fresh appliance each (o passed, x failed)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    save(fig, out)


def phase_of(report, name):
    for p in report.get("phases", []):
        if p.get("phase") == name:
            return p
    return (report.get("phases") or [None])[0]


def overload(directory, out):
    meta = read_json(os.path.join(directory, "meta.json"))
    background = phase_of(read_json(os.path.join(directory, "background.json")), meta["phase"])
    rush = phase_of(read_json(os.path.join(directory, "rush.json")), meta["phase"])
    if background is None or rush is None:
        fail(f"{directory}: a bench JSON has no phase")
    if "timeline" not in background or "timeline" not in rush:
        fail("these bench JSONs have no per-second timeline (a tigerfans built before it): no chart")
    limit = meta.get("p99_limit_ms", 50)
    offset = meta["rush_offset_s"]
    rush_end = offset + meta["rush_s"]
    rss = []
    try:
        with open(os.path.join(directory, "rss.tsv")) as f:
            for line in f:
                fields = line.split()
                if len(fields) == 3 and not line.startswith("t_s"):
                    rss.append((float(fields[0]), float(fields[1]) / 1024, float(fields[2]) / 1024))
    except OSError:
        pass

    plt = load_matplotlib()
    rows = 3 if rss else 2
    fig, axes = plt.subplots(rows, 1, figsize=(7.5, 2.2 * rows + 0.6), sharex=True)
    for ax in axes:
        ax.axvspan(offset, rush_end, color="tab:red", alpha=0.08, linewidth=0)

    # Each load's last bucket, past its --duration, holds only its stragglers: not a second of load.
    background["timeline"] = [s for s in background["timeline"] if s["t_s"] < meta["background_s"]]
    rush["timeline"] = [s for s in rush["timeline"] if s["t_s"] < meta["rush_s"]]
    ax = axes[0]
    t = [s["t_s"] + 0.5 for s in background["timeline"]]
    p99 = [s["p99_ms"] if s["ok"] > 0 else float("nan") for s in background["timeline"]]
    p50 = [s["p50_ms"] if s["ok"] > 0 else float("nan") for s in background["timeline"]]
    ax.plot(t, p99, "-", color="tab:blue", label="p99")
    ax.plot(t, p50, "--", color="tab:blue", alpha=0.6, label="p50")
    ax.axhline(limit, linestyle=":", color="black", linewidth=1, label=f"{limit:g} ms")
    recovery = meta.get("recovery_s")
    if recovery is not None:
        ax.axvline(rush_end + recovery, color="tab:green", linewidth=1,
                   label=f"recovered {recovery:.0f} s after the rush")
    log_ms_axis(plt, ax)
    ax.set_ylabel("ms")
    ax.set_title(f"background load at {meta['background_rate']:,}/s: latency per second", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")

    ax = axes[1]
    rt = [s["t_s"] + offset + 0.5 for s in rush["timeline"]]
    ax.plot(rt, [s["ok"] for s in rush["timeline"]], "-", color="tab:green", label="rush ok")
    # The timeline counts errors of every kind; say 503 only when the rush had no other kind.
    kinds = rush.get("errors") if isinstance(rush.get("errors"), dict) else {}
    shed_only = kinds and all(k.startswith("HTTP 503") for k in kinds)
    ax.plot(rt, [s["errors"] for s in rush["timeline"]], "-", color="tab:red",
            label="rush 503 (shed)" if shed_only else "rush errors (see the kinds in rush.json)")
    ax.plot(t, [s["ok"] for s in background["timeline"]], "-", color="tab:blue", alpha=0.6, label="background ok")
    if any(s["errors"] for s in background["timeline"]):
        ax.plot(t, [s["errors"] for s in background["timeline"]], ":", color="tab:blue", label="background errors")
    ax.set_ylabel("answers/s")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.set_title(f"rush at {meta['rush_rate']:,}/s (shaded): answers per second", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")

    if rss:
        # The replica's RSS is mostly its grid cache, some GiB: its own axis, on the right.
        ax = axes[2]
        ax.plot([r[0] for r in rss], [r[1] for r in rss], "-", color="tab:purple")
        ax.set_ylabel("tigerfans RSS MiB", color="tab:purple")
        ax.set_ylim(0, max(r[1] for r in rss) * 1.15 or 1)
        right = ax.twinx()
        right.plot([r[0] for r in rss], [r[2] for r in rss], "-", color="tab:gray")
        right.set_ylabel("replica RSS MiB", color="tab:gray")
        right.set_ylim(0, max(r[2] for r in rss) * 1.15 or 1)
        right.grid(False)
        ax.set_title("memory (ps, each second): tigerfans (left axis) and its replica (right)", fontsize=9)
    axes[-1].set_xlabel("seconds since the background load started")
    date = meta.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    fig.suptitle(f"tigerfans {meta['phase']} overload, {date}: {machine_text(meta.get('machine'))}", fontsize=10)
    fig.tight_layout()
    save(fig, out)


def main(argv):
    if len(argv) != 4 or argv[1] not in ("sweep", "overload"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    (sweep if argv[1] == "sweep" else overload)(argv[2], argv[3])


if __name__ == "__main__":
    main(sys.argv)
