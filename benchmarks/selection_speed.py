"""Speed and memory of selecting the top-k from Vertex-format batch predictions.

Compares, in the same run and on the same file, labelloop's streaming selection
(`select_from_predictions`, least confidence) with the straightforward approach: `json.loads`
per line, a list of dicts, a full sort by max confidence. Then measures the streaming
selection's peak resident memory in a fresh subprocess on a (larger) file.

The selection's compiled scanner (numba) is compiled once per checkout and cached; loading it
in a new process costs a fraction of a second. The warm-up on a small file is timed and printed
apart; the ratio is for the selection itself, both measured after it, best of `--repeat` runs.

The files are generated into a temporary folder and deleted afterwards.

Usage:
    .venv/bin/python benchmarks/selection_speed.py                  # 1M lines, top 10k
    .venv/bin/python benchmarks/selection_speed.py --full           # + 10M lines memory check
    .venv/bin/python benchmarks/selection_speed.py --numbers repr   # 17-digit confidences
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop.active_learning.predictions import select_from_predictions  # noqa: E402

N_CLASSES = 10
IDS = json.dumps([str(1000 + j) for j in range(N_CLASSES)])
NAMES = json.dumps([str(j) for j in range(N_CLASSES)])
# Number spellings: 6 significant digits, or a float64's repr (up to 17, parsed approximately
# by the scanner and re-read exactly for the kept lines).
NUMBER_FORMATS = {"short": "%.6g", "repr": "%r"}


def template(number_format: str) -> str:
    """One prediction line with `%` slots for the index and the confidences."""
    return (
        '{"instance": {"content": "gs://bucket/images/img_%09d.png", "mimeType": "image/png"}, '
        f'"prediction": {{"ids": {IDS}, "displayNames": {NAMES}, "confidences": ['
        + ", ".join([NUMBER_FORMATS[number_format]] * N_CLASSES)
        + "]}}\n"
    )


def generate(
    path: Path, n: int, *, seed: int = 0, bad_every: int = 100_000, numbers: str = "short"
) -> None:
    """Write `n` prediction lines (Dirichlet confidences); every `bad_every`-th is bad."""
    rng = np.random.default_rng(seed)
    line = template(numbers)
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            proba = rng.dirichlet(np.full(N_CLASSES, 0.3), size=m)
            lines = [line % (start + i, *proba[i].tolist()) for i in range(m)]
            for i in range(0, m, bad_every):
                if start + i > 0:
                    # A valid-JSON line with a negative confidence: reported, not selected.
                    lines[i] = lines[i].replace('"confidences": [', '"confidences": [-0.5, ', 1)
            fh.writelines(lines)


def naive_top_k(path: Path, k: int) -> list[str]:
    """The straightforward way: json per line, a list of dicts, full sort by max confidence."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            rows.append(
                {
                    "item": row["instance"]["content"],
                    "max_confidence": max(row["prediction"]["confidences"]),
                }
            )
    rows.sort(key=lambda r: r["max_confidence"])
    return [r["item"] for r in rows[:k]]


MEMORY_CHILD = """
import resource, sys, time
sys.path.insert(0, {src!r})
from labelloop.active_learning.predictions import select_from_predictions
t = time.perf_counter()
r = select_from_predictions({path!r}, {k}, strategy="least_confidence")
elapsed = time.perf_counter() - t
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak_kib, elapsed, r.pool, r.bad_records, len(r.items))
"""


def peak_memory(path: Path, k: int) -> tuple[float, float, int, int]:
    """Peak RSS (MiB), seconds, pool and bad lines of a selection run in a fresh process."""
    code = MEMORY_CHILD.format(src=str(ROOT / "src"), path=str(path), k=k)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib, elapsed, pool, bad, _ = out.stdout.split()
    return int(peak_kib) / 1024, float(elapsed), int(pool), int(bad)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--size", type=int, default=1_000_000, help="lines for the speed comparison")
    p.add_argument("--k", type=int, default=10_000)
    p.add_argument("--full", action="store_true", help="also measure memory on --memory-size")
    p.add_argument("--memory-size", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each; best is kept")
    p.add_argument("--tmp", help="folder for the generated files (default: system temp)")
    p.add_argument(
        "--numbers",
        choices=sorted(NUMBER_FORMATS),
        default="short",
        help="confidence spelling: short (%%.6g) or repr (a float64's repr, up to 17 digits)",
    )
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="labelloop-speed-") as tmp:
        path = Path(tmp) / "prediction.results-00000-of-00001"
        t = time.perf_counter()
        generate(path, args.size, numbers=args.numbers)
        size_mb = path.stat().st_size / 2**20
        print(
            f"generated {args.size:,} lines ({size_mb:,.0f} MiB) in {time.perf_counter() - t:.1f} s"
        )

        warm = Path(tmp) / "warm.jsonl"
        generate(warm, 1000)
        t = time.perf_counter()
        select_from_predictions(str(warm), 10, strategy="least_confidence")
        warm_s = time.perf_counter() - t
        print(f"warm-up (load or compile the scanner, 1,000 lines): {warm_s:.2f} s")

        fast_runs, naive_runs = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fast = select_from_predictions(str(path), args.k, strategy="least_confidence")
            fast_runs.append(time.perf_counter() - t)
            t = time.perf_counter()
            naive = naive_top_k(path, args.k)
            naive_runs.append(time.perf_counter() - t)
        fast_s, naive_s = min(fast_runs), min(naive_runs)
        overlap = len({s.item for s in fast.items} & set(naive)) / max(1, len(naive))
        print(
            f"top {args.k:,} of {args.size:,} (least confidence, {args.numbers} numbers), "
            f"best of {args.repeat}"
        )
        print(f"  straightforward (json + list of dicts + sort): {naive_s:7.2f} s")
        print(f"  labelloop streaming selection:                 {fast_s:7.2f} s")
        print(
            f"  speed-up: {naive_s / fast_s:.1f}x   same items: {overlap:.2%}   "
            f"bad lines reported: {fast.bad_records} (naive kept them)"
        )

        mem_mib, mem_s, pool, bad = peak_memory(path, args.k)
        print(
            f"  peak RSS, {args.size:,} lines in a fresh process: {mem_mib:,.0f} MiB "
            f"({mem_s:.1f} s, pool {pool:,}, bad {bad})"
        )
        path.unlink()

        if args.full:
            big = Path(tmp) / "prediction.results-00000-of-00001"
            t = time.perf_counter()
            generate(big, args.memory_size, numbers=args.numbers)
            print(
                f"generated {args.memory_size:,} lines "
                f"({big.stat().st_size / 2**30:.1f} GiB) in {time.perf_counter() - t:.0f} s"
            )
            mem_mib, mem_s, pool, bad = peak_memory(big, args.k)
            print(
                f"  peak RSS, {args.memory_size:,} lines: {mem_mib:,.0f} MiB "
                f"(limit 1024 MiB; {mem_s:.0f} s, pool {pool:,}, bad {bad})"
            )
            big.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
