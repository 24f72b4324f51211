"""Dawid-Skene speed and memory: labelloop against crowd-kit, same data, same iteration budget.

Synthetic crowd: `--size` annotations (default 1M: about 333k items x 3 labels), 5 classes,
1000 annotators whose accuracy is spread uniformly over [0.35, 0.95] (errors uniform over the
other classes). Each method runs in its own subprocess twice: once timed (no tracing), once
under `tracemalloc` for the peak memory allocated during `fit` (numpy and pandas report their
buffers to tracemalloc; the input arrays / DataFrame are built before tracing starts). Both run
exactly `--iters` EM iterations (tolerance disabled) so the work is the same.

`--full` also fits labelloop alone on 10M annotations and reports the process's peak RSS
(`resource.getrusage`, which includes the data itself) against the 4 GB budget.

    .venv/bin/python benchmarks/consolidation.py            # 1M, prints the ratios
    .venv/bin/python benchmarks/consolidation.py --full     # plus the 10M run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

N_CLASSES = 5
N_ANNOTATORS = 1000
PER_ITEM = 3


def make_crowd(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item, annotator, label, truth): `size` annotations, three distinct annotators per item."""
    rng = np.random.default_rng(seed)
    n_items = size // PER_ITEM
    truth = rng.integers(0, N_CLASSES, n_items)
    skill = rng.uniform(0.35, 0.95, N_ANNOTATORS)
    base = rng.integers(0, N_ANNOTATORS, n_items)
    step = rng.integers(1, N_ANNOTATORS // PER_ITEM, n_items)
    annotator = (base[:, None] + step[:, None] * np.arange(PER_ITEM)) % N_ANNOTATORS
    item = np.repeat(np.arange(n_items), PER_ITEM)
    annotator = annotator.ravel()
    correct = rng.random(item.shape[0]) < skill[annotator]
    wrong = (truth[item] + rng.integers(1, N_CLASSES, item.shape[0])) % N_CLASSES
    label = np.where(correct, truth[item], wrong)
    return item, annotator, label, truth


def run_one(method: str, size: int, iters: int, trace: bool, repeat: int) -> dict[str, float]:
    """Fit one method in this process; return best-of-`repeat` seconds, traced peak bytes,
    accuracy and the process's max RSS."""
    item, annotator, label, truth = make_crowd(size)
    n_items = truth.shape[0]
    if method == "crowdkit":
        import pandas as pd
        from crowdkit.aggregation import DawidSkene as CrowdKitDS

        frame = pd.DataFrame({"task": item, "worker": annotator, "label": label})
        model = CrowdKitDS(n_iter=iters, tol=-np.inf)
        fit = lambda: model.fit(frame)  # noqa: E731
    else:
        from labelloop.quality.consolidation import DawidSkene

        ours = DawidSkene(n_iter=iters, tol=-np.inf, smoothing=0.0)
        fit = lambda: ours.fit(  # noqa: E731
            item, annotator, label, n_items=n_items, n_labels=N_CLASSES, n_annotators=N_ANNOTATORS
        )
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
    seconds = math.inf
    for _ in range(1 if trace else repeat):
        start = time.perf_counter()
        fit()
        seconds = min(seconds, time.perf_counter() - start)
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    predicted = model.labels_.sort_index().to_numpy() if method == "crowdkit" else ours.labels_
    return {
        "seconds": seconds,
        "peak_bytes": float(peak),
        "accuracy": float(np.mean(predicted == truth)),
        "max_rss_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
    }


def in_subprocess(
    method: str, size: int, iters: int, *, trace: bool, repeat: int = 1
) -> dict[str, float]:
    """Run `run_one` in a fresh interpreter (clean peak memory), single-threaded BLAS."""
    # Both run on one core: pandas is single-threaded, and on a busy 2-core machine
    # multi-threaded BLAS only adds contention to our small matrix products.
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    command = [sys.executable, __file__, "--child", method, "--size", str(size)]
    command += ["--iters", str(iters), "--repeat", str(repeat)] + (["--trace"] if trace else [])
    out = subprocess.run(
        command,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="annotations")
    parser.add_argument("--iters", type=int, default=20, help="EM iterations for both")
    parser.add_argument("--repeat", type=int, default=3, help="timed fits; the best counts")
    parser.add_argument("--full", action="store_true", help="also run labelloop on 10M")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.size, args.iters, args.trace, args.repeat)))
        return
    print(
        f"{args.size:,} annotations, {N_CLASSES} classes, {N_ANNOTATORS} annotators, "
        f"{args.iters} EM iterations each"
    )
    results = {}
    for method in ("labelloop", "crowdkit"):
        timed = in_subprocess(method, args.size, args.iters, trace=False, repeat=args.repeat)
        traced = in_subprocess(method, args.size, args.iters, trace=True)
        results[method] = {**timed, "peak_bytes": traced["peak_bytes"]}
        r = results[method]
        print(
            f"  {method:10s} {r['seconds']:8.2f} s  peak {r['peak_bytes'] / 2**20:8.1f} MiB  "
            f"accuracy {r['accuracy']:.4f}"
        )
    ours, theirs = results["labelloop"], results["crowdkit"]
    print(f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x (goal >= 10x)")
    print(
        f"peak memory ratio (ours / crowd-kit): {ours['peak_bytes'] / theirs['peak_bytes']:.3f} "
        "(goal <= 0.5)"
    )
    diff = 100 * (ours["accuracy"] - theirs["accuracy"])
    print(f"accuracy difference: {diff:+.3f} pt (goal within +-0.1)")
    if args.full:
        big = in_subprocess("labelloop", 10_000_000, args.iters, trace=False)
        print(
            f"10M annotations: {big['seconds']:.1f} s, process peak RSS "
            f"{big['max_rss_bytes'] / 2**30:.2f} GiB (goal < 4 GB), accuracy {big['accuracy']:.4f}"
        )


if __name__ == "__main__":
    main()
