"""Whole-process speed and memory of `labelloop select` on Vertex batch-prediction files.

Side by side in one run, on the same generated file (top 10k, least confidence):
- `labelloop select` (the CLI: engine pass with every check, exact re-rank, import file written);
- DuckDB's one query a user would write instead (`read_json` -> `1 - list_max(...)` ->
  `ORDER BY ... LIMIT`, no checks: a string "0.5" or `true` is silently a number there);
- the straightforward script (`json.loads` per line, a list of dicts, a full sort).
Then the same file split into Vertex-style shards (`prediction.results-0000N-of-0000M`, read
in parallel), and with `--full` the peak memory on 10M lines (goal: under 1 GiB).

Each figure is the median of `--runs` fresh processes: CPU seconds (user + sys: the steadier
figure on a shared machine), wall seconds and peak RSS. Every 100,000th line carries a
negative confidence, so the bad-line path (counted, reported with its line) is exercised.
Generated files go to benchmarks/results/ (gitignored) and are kept for the next run.

Usage:
    .venv/bin/python benchmarks/selection_speed.py          # 1M lines
    .venv/bin/python benchmarks/selection_speed.py --full   # + 10M lines peak memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_CLASSES = 10
IDS = json.dumps([str(1000 + j) for j in range(N_CLASSES)])
NAMES = json.dumps([str(j) for j in range(N_CLASSES)])
LINE = (
    '{"instance": {"content": "gs://bucket/images/img_%09d.png", "mimeType": "image/png"}, '
    f'"prediction": {{"ids": {IDS}, "displayNames": {NAMES}, "confidences": ['
    + ", ".join(["%.6g"] * N_CLASSES)
    + "]}}\n"
)
DUCKDB = """
import sys
import duckdb
src, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
duckdb.sql(f'''COPY (SELECT instance.content AS imageGcsUri,
    1 - list_max(prediction.confidences) AS score
    FROM read_json('{src}', format='newline_delimited') ORDER BY score DESC LIMIT {k})
    TO '{out}' (FORMAT json)''')
"""
SCRIPT = """
import json, sys
src, k = sys.argv[1], int(sys.argv[2])
rows = []
with open(src, encoding="utf-8") as fh:
    for line in fh:
        row = json.loads(line)
        rows.append((max(row["prediction"]["confidences"]), row["instance"]["content"]))
rows.sort()
print(len(rows[:k]))
"""


def generate(path: Path, n: int, *, seed: int = 0, bad_every: int = 100_000) -> Path:
    """`n` prediction lines (Dirichlet confidences); every `bad_every`-th is bad."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            proba = rng.dirichlet(np.full(N_CLASSES, 0.3), size=m)
            lines = [LINE % (start + i, *proba[i].tolist()) for i in range(m)]
            for i in range(0, m, bad_every):
                if start + i:
                    lines[i] = lines[i].replace('"confidences": [', '"confidences": [-0.5, ', 1)
            fh.writelines(lines)
    tmp.replace(path)
    return path


def shard(path: Path, parts: int) -> Path:
    """The file split into Vertex-style result shards in a folder beside it."""
    folder = path.with_name(path.name + f".{parts}-shards")
    if folder.exists():
        return folder
    folder.mkdir()
    # Streamed: this process stays small (a forked child starts with the parent's pages, so a
    # big parent would inflate the children's peak RSS).
    with path.open("rb") as fh:
        total = sum(1 for _ in fh)
        fh.seek(0)
        step = -(-total // parts)
        for p in range(parts):
            name = f"prediction.results-{p:05d}-of-{parts:05d}"
            with (folder / name).open("wb") as out:
                out.writelines(line for _, line in zip(range(step), fh, strict=False))
    return folder


def measure(cmd: list[str], runs: int) -> tuple[float, float, float]:
    """Medians of (CPU seconds, wall seconds, peak RSS MiB) over `runs` fresh processes."""
    cpus, walls, peaks = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        cpus.append(usage.ru_utime + usage.ru_stime)
        peaks.append(usage.ru_maxrss / 1024)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    return statistics.median(cpus), statistics.median(walls), statistics.median(peaks)


def show(name: str, figures: tuple[float, float, float], base: tuple[float, float, float]) -> None:
    cpu, wall, peak = figures
    print(
        f"| {name} | {cpu:.2f} | {wall:.2f} | {peak:.0f} | {cpu / base[0]:.2f}x | "
        f"{peak / base[2]:.2f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--full", action="store_true", help="also the 10M-line peak memory")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = generate(RESULTS / f"predictions-{args.size}.jsonl", args.size)
    out = RESULTS / "selected.jsonl"
    cli = [sys.executable, "-m", "labelloop.cli", "select", "--k", str(args.k)]
    cli += ["--strategy", "least_confidence", "--out", str(out)]
    load = os.getloadavg()[0]
    print(f"top {args.k:,} of {args.size:,} lines, medians of {args.runs} runs, load {load:.1f}")
    print("| command | CPU s | wall s | peak MiB | CPU vs DuckDB | memory vs DuckDB |")
    print("|---|---|---|---|---|---|")
    duck = measure(
        [sys.executable, "-c", DUCKDB, str(path), str(args.k), str(out) + ".d"], args.runs
    )
    show("DuckDB one query (no checks)", duck, duck)
    show("labelloop select", measure([*cli, str(path)], args.runs), duck)
    folder = shard(path, args.shards)
    show(f"labelloop select, {args.shards} shards", measure([*cli, str(folder)], args.runs), duck)
    script = measure([sys.executable, "-c", SCRIPT, str(path), str(args.k)], 1)
    show("json.loads per line + sort (1 run)", script, duck)
    if args.full:
        big = generate(RESULTS / "predictions-10000000.jsonl", 10_000_000, seed=2)
        cpu, wall, peak = measure([*cli, str(big)], 1)
        print(f"10M lines: {cpu:.1f} s CPU, {wall:.1f} s wall, peak {peak:.0f} MiB (goal < 1024)")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
