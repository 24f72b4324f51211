"""Whole-process figures of the CLI on realistic files, side by side with what a user would run
instead, all measured in this one run (medians of --runs runs; CPU seconds, wall time and peak
RSS of each process, children included; on a shared machine the CPU ratio is the steadier one).

    .venv/bin/python benchmarks/end_to_end.py           # 1M / 2M annotations, 1M predictions
    .venv/bin/python benchmarks/end_to_end.py --full     # plus 10M annotations and 10M predictions

Peers: crowd-kit as its users run it (`pandas.read_csv` -> `DawidSkene(n_iter=100).fit_predict`
-> `to_csv`) and DuckDB's one query for top-k least confidence (`read_json` ->
`1 - list_max(prediction.confidences)` -> `ORDER BY ... LIMIT`). Generated data goes to
benchmarks/results/ (gitignored). Needs crowd-kit, pandas and duckdb (the dev extras).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

# The DuckDB peer query is the selection benchmark's: one definition of what users would run.
sys.path.insert(0, str(Path(__file__).parent))
from selection_speed import DUCKDB
from selection_speed import measure as selection_measure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LABELLOOP = [sys.executable, "-m", "labelloop.cli"]

CROWDKIT = """
import sys
import pandas as pd
from crowdkit.aggregation import DawidSkene
src, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(src, dtype=str).rename(columns={"item": "task", "annotator": "worker"})
DawidSkene(n_iter=100).fit_predict(df).rename("label").rename_axis("item").to_csv(out)
"""


def make_annotations(path: Path, n: int, seed: int = 0) -> None:
    """n annotations `item,annotator,label` with string ids: n/3 items x 3, 5 classes, 1000
    annotators of accuracy 0.35-0.95."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    k, workers, per = 5, 1000, 3
    items = n // per
    truth = rng.integers(0, k, items)
    skill = rng.uniform(0.35, 0.95, workers)
    base = rng.integers(0, workers, items)
    step = rng.integers(1, workers // per, items)
    ann = ((base[:, None] + step[:, None] * np.arange(per)) % workers).ravel()
    item = np.repeat(np.arange(items), per)
    ok = rng.random(item.shape[0]) < skill[ann]
    wrong = (truth[item] + rng.integers(1, k, item.shape[0])) % k
    lab = np.where(ok, truth[item], wrong)
    names = np.array(["cat", "dog", "bird", "fish", "frog"])
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write("item,annotator,label\n")
        for s in range(0, item.shape[0], 200_000):
            e = s + 200_000
            f.write(
                "".join(
                    f"item-{i:07d},worker-{a:04d},{names[c]}\n"
                    for i, a, c in zip(item[s:e], ann[s:e], lab[s:e], strict=True)
                )
            )
    tmp.replace(path)


def make_predictions(path: Path, n: int, seed: int = 0) -> None:
    """n Vertex batch-prediction lines, 10 classes, Dirichlet confidences."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    ids = '["1000","1001","1002","1003","1004","1005","1006","1007","1008","1009"]'
    names = '["0","1","2","3","4","5","6","7","8","9"]'
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            conf = rng.dirichlet(np.full(10, 0.3), m)
            f.write(
                "".join(
                    f'{{"instance": {{"content": "gs://bucket/images/img_{start + i:09d}.png", '
                    f'"mimeType": "image/png"}}, "prediction": {{"ids": {ids}, '
                    f'"displayNames": {names}, '
                    f'"confidences": [{", ".join(f"{x:.6g}" for x in conf[i])}]}}}}\n'
                    for i in range(m)
                )
            )
    tmp.replace(path)


def make_shards(path: Path, parts: int) -> Path:
    """The file split into Vertex-style `prediction.results-*` shards in a folder beside it."""
    folder = path.with_name(f"{path.stem}-{parts}-shards")
    if not folder.exists():
        folder.mkdir()
        # Streamed: a forked child starts with this process's pages (peak RSS figures).
        with path.open("rb") as fh:
            step = -(-sum(1 for _ in fh) // parts)
            fh.seek(0)
            for p in range(parts):
                with (folder / f"prediction.results-{p:05d}-of-{parts:05d}").open("wb") as out:
                    out.writelines(line for _, line in zip(range(step), fh, strict=False))
    return folder


def to_parquet(csv_path: Path) -> Path:
    out = csv_path.with_suffix(".parquet")
    if not out.exists():
        import duckdb

        duckdb.sql(
            f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar=true)) TO '{out}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
    return out


@dataclasses.dataclass(frozen=True)
class Figures:
    """Medians over runs of one whole process: wall and CPU seconds, peak RSS in MiB."""

    wall: float
    cpu: float
    peak: float


def measure(cmd: list[str], runs: int) -> Figures:
    """Median wall seconds, CPU seconds (user + sys, children included) and peak RSS of `cmd`
    as a whole process (the selection benchmark's measure). CPU seconds are the steadier
    figure on a shared machine."""
    cpu, wall, peak = selection_measure(cmd, runs)
    return Figures(wall, cpu, peak)


def row(name: str, ours: Figures, peer: Figures | None, goal: str) -> None:
    mine = f"{ours.cpu:.2f} s CPU, {ours.wall:.2f} s wall, {ours.peak:.0f} MiB"
    if peer is None:
        print(f"| {name} | {mine} | | | {goal} |")
        return
    print(
        f"| {name} | {mine} | {peer.cpu:.2f} s CPU, {peer.wall:.2f} s wall, {peer.peak:.0f} MiB | "
        f"{peer.cpu / ours.cpu:.2f}x CPU, {peer.wall / ours.wall:.2f}x wall, "
        f"{ours.peak / peer.peak:.2f}x memory | {goal} |"
    )


def same_labels(ours: Path, peer: Path) -> None:
    """Print how many items got the same label from both (they fit the same model)."""
    import duckdb

    same, total = duckdb.sql(
        f"SELECT count(*) FILTER (WHERE a.label = b.label), count(*) "
        f"FROM read_csv('{ours}', all_varchar=true) a "
        f"JOIN read_csv('{peer}', all_varchar=true) b USING (item)"
    ).fetchall()[0]
    print(f"|   same label as crowd-kit | {same} of {total} items | | | same accuracy |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="add the 10M cases")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    ann1m = RESULTS / "annotations-1m.csv"
    ann2m = RESULTS / "annotations-2m.csv"
    pred1m = RESULTS / "predictions-1m.jsonl"
    make_annotations(ann1m, 1_000_000)
    make_annotations(ann2m, 2_000_000, seed=1)
    make_predictions(pred1m, 1_000_000)
    pq1m = to_parquet(ann1m)
    out = RESULTS / "out"
    out.mkdir(exist_ok=True)
    py = [sys.executable, "-c"]
    print("| case | labelloop | peer | ratio | goal |")
    print("|---|---|---|---|---|")
    ours = measure([*LABELLOOP, "consolidate", str(ann1m), "--out", str(out / "l.csv")], args.runs)
    peer = measure([*py, CROWDKIT, str(ann1m), str(out / "ck.csv")], args.runs)
    row("consolidate 1M CSV->CSV vs crowd-kit", ours, peer, ">= 10x faster")
    same_labels(out / "l.csv", out / "ck.csv")
    pq = measure([*LABELLOOP, "consolidate", str(pq1m), "--out", str(out / "p.csv")], args.runs)
    row("consolidate 1M Parquet->CSV vs CSV->CSV", pq, ours, "at least as fast")
    agree = measure([*LABELLOOP, "agreement", str(ann2m)], args.runs)
    row("agreement 2M", agree, None, "<= 5 s")
    sel = [*LABELLOOP, "select", str(pred1m), "--k", "10000", "--strategy", "least_confidence"]
    ours_sel = measure([*sel, "--out", str(out / "sel.jsonl")], args.runs)
    peer_sel = measure([*py, DUCKDB, str(pred1m), "10000", str(out / "d.json")], args.runs)
    row("select top-10k of 1M vs DuckDB query", ours_sel, peer_sel, "no slower, no more memory")
    shards = [*LABELLOOP, "select", str(make_shards(pred1m, 8)), "--k", "10000", "--strategy"]
    sharded = measure([*shards, "least_confidence", "--out", str(out / "sh.jsonl")], 1)
    row("select, the same 1M in 8 shards vs one file", sharded, ours_sel, "shards read in parallel")
    if args.full:
        ann10m = RESULTS / "annotations-10m.csv"
        pred10m = RESULTS / "predictions-10m.jsonl"
        make_annotations(ann10m, 10_000_000, seed=2)
        make_predictions(pred10m, 10_000_000, seed=2)
        big = measure([*LABELLOOP, "consolidate", str(ann10m), "--out", str(out / "b.csv")], 1)
        row("consolidate 10M CSV->CSV", big, None, "<= 20 s, <= 1.5 GiB")
        sel10 = [*LABELLOOP, "select", str(pred10m), "--k", "10000", "--strategy", "margin"]
        row(
            "select top-10k of 10M",
            measure([*sel10, "--out", str(out / "s.jsonl")], 1),
            None,
            "< 1 GiB",
        )


if __name__ == "__main__":
    main()
