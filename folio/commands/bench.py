"""``folio bench [SUITE...]``: run benchmark harnesses, collect their tables.

Each suite is a module under ``benchmarks/`` (or ``fanout.bench``) that prints
a markdown table; this runs them one after another in their own processes
(so a suite's memory and chDB directory never leak into the next) and writes
one report with the machine it came from.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

SUITES: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (module, full arguments, --quick arguments)
    "ingest": ("benchmarks.ingest_bench", ["--mode", "both"], ["--quick"]),
    "valuation": ("benchmarks.valuation_bench", [], ["--quick"]),
    "alerts": ("benchmarks.alerts_bench", [], ["--quick"]),
    "history": ("benchmarks.history_bench", [], ["--symbols", "100"]),
    "fanout": ("fanout.bench", [], ["--quick"]),
    "chaos": ("benchmarks.chaos_bench", [], ["--quick"]),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def run_suite(name: str, quick: bool) -> tuple[str, str, float, int]:
    module, full, fast = SUITES[name]
    argv = [sys.executable, "-m", module, *(fast if quick else full)]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    command = "python -m " + " ".join(argv[2:])
    output = result.stdout if result.returncode == 0 else result.stdout + result.stderr[-2000:]
    return command, output, elapsed, result.returncode


def bench(
    suites: list[str] = typer.Argument(None, help=f"Any of: {', '.join(SUITES)} (default: all)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller runs (minutes, not tens)."),
    output: Path = typer.Option(Path("benchmarks/RESULTS.md"), help="Where to write the report."),
) -> None:
    """Run benchmark suites and write one markdown report."""
    chosen = suites or list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        raise typer.BadParameter(
            f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# Benchmarks\n\n{stamp} on {machine()}\n"]
    failed = []
    for name in chosen:
        typer.echo(f"running {name} ...", err=True)
        command, text, elapsed, code = run_suite(name, quick)
        status = "" if code == 0 else f" — FAILED (exit {code})"
        parts.append(f"## {name}{status}\n\n`{command}` ({elapsed:.0f} s)\n\n{text.strip()}\n")
        if code:
            failed.append(name)
    report = "\n".join(parts)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    typer.echo(report)
    if failed:
        raise typer.Exit(1)
