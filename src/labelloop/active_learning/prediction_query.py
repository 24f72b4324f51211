"""The engine query behind prediction selection: one pass over every prediction file.

DuckDB (`labelloop.tables.connect`) reads the Vertex JSONL files in parallel (a list of files is
one scan), checks each line and scores it, and keeps only aggregates: the pool counts, the
score histogram, the best `n` candidates (`arg_max` with a total order: score, then file, then
line), the first bad records and the rows it cannot vouch for (left to the exact reader).

Strict types: the engine would turn `"0.5"` or `true` inside a `DOUBLE[]` into numbers, so
`confidences` is read as JSON text, refused unless it is a list of plain JSON numbers, and only
then cast. A clean input takes one parallel pass; only when a line is bad, repeated or left to
the exact reader does a second pass number the rows (`WITH ORDINALITY`, counted over the
non-blank lines of the files in order; `predictions.py` turns them into file lines).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labelloop.active_learning import strategies

if TYPE_CHECKING:
    import duckdb

SUM_TOLERANCE = 0.01
#: Row codes: a reason is `field|reason`; `SLOW` rows are decided by the exact reader.
SLOW = "slow"
# A URI-like content is its own item id; any other content is inline text (`schemas.text_item_id`).
URI_PREFIXES = ("gs://", "/", "file://", "./", "http://", "https://")

# Only what the checks and scores read: every other field costs the reader time. A line
# without `instance.content` (an `instance` string, a `key` field) goes to the exact reader.
_COLUMNS = (
    "{'instance': 'STRUCT(content VARCHAR)', "
    "'prediction': 'STRUCT(confidences JSON, displayNames JSON, ids JSON)'}"
)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def score_sql(strategy: str, seed: int) -> str:
    """The engine expression of a strategy's ranking score over the list `v` (and `content`).

    Uncertainty strategies register theirs beside the numpy score (`strategies.SQL_SCORES`);
    batch-aware strategies and class balancing rank candidates by margin first; random is a
    seeded draw keyed by the item, so the sample does not depend on file order.
    """
    if strategy == "random":
        return f"(hash(content, {int(seed)}::BIGINT) >> 11)::DOUBLE / 9007199254740992.0"
    name = strategy if strategy in strategies.SCORERS else "margin"
    return strategies.SQL_SCORES[name]


def random_score(content: str, seed: int) -> float:
    """Random's draw for one item (a line only the exact reader read)."""
    import duckdb

    rows = duckdb.execute(
        f"SELECT {score_sql('random', seed)} FROM (SELECT ? AS content)", [content]
    ).fetchall()
    return float(rows[0][0])


@dataclasses.dataclass(frozen=True)
class Pass:
    """What one pass over the files gave."""

    pool: int
    rows: int
    excluded: int
    repeated: list[int]  # hashes of items on more than one valid row
    histogram: list[int]
    first_rows: list[int]  # each file's first position (0: no row)

    def spans(self) -> dict[int, tuple[int, int]]:
        """File index -> (position before its first row, its row count), files with rows."""
        starts = [(f, o) for f, o in enumerate(self.first_rows) if o]
        ends = [o for _, o in starts[1:]] + [self.rows + 1] * bool(starts)
        return {f: (o - 1, end - o) for (f, o), end in zip(starts, ends, strict=True)}

    candidates: list[dict[str, Any]]  # f, o, content, cj, names, s; best first
    bad_count: int
    slow_count: int
    bad: list[tuple[int, int, str]]  # (file index, position, "field|reason"), file order
    slow: list[tuple[int, int]]  # (file index, position) of rows the exact reader decides


@dataclasses.dataclass(frozen=True)
class Spelling:
    """The `displayNames` and `ids` JSON texts most lines share (a string compare checks them)."""

    names: str | None = None
    ids: str | None = None


def reader(paths: Sequence[str], compression: str | None) -> str:
    """The engine's scan of the prediction files (`compression` as their bytes say, since a
    gzip file need not be named `.gz`)."""
    files = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
    comp = f", compression={_sql_str(compression)}" if compression else ""
    return (
        f"read_json({files}, format='newline_delimited', ignore_errors=true, "
        f"columns={_COLUMNS}{comp})"
    )


def spelling(con: duckdb.DuckDBPyConnection, path: str, compression: str | None = None) -> Spelling:
    """The first line's `displayNames` / `ids` spellings, as the engine writes them."""
    rows = con.execute(
        f"SELECT prediction.displayNames, prediction.ids FROM {reader([path], compression)} "
        "WHERE prediction.displayNames IS NOT NULL LIMIT 1"
    ).fetchall()
    return Spelling(*(str(x) if x is not None else None for x in rows[0])) if rows else Spelling()


def _vector_len(column: str, canon: str | None) -> str:
    """Length of a JSON list column: known for the common spelling, parsed for the others."""
    if canon is None:
        return f"json_array_length({column})"
    known = len(json.loads(canon)) if isinstance(json.loads(canon), list) else 0
    return (
        f"CASE WHEN {column} = {_sql_str(canon)} THEN {known} ELSE json_array_length({column}) END"
    )


def _label_check(labels: Sequence[str] | None, canon: str | None) -> str:
    """The CASE arm refusing display names outside `labels` (the common spelling checked here)."""
    if not labels:
        return ""
    label_list = "[" + ", ".join(_sql_str(x) for x in labels) + "]"
    parsed = "from_json(names, '[\"VARCHAR\"]')"
    outside = f"NOT list_has_all({label_list}, {parsed})"
    if canon is not None:
        names = json.loads(canon)
        known = isinstance(names, list) and all(str(x) in set(labels) for x in names)
        outside = f"CASE WHEN names = {_sql_str(canon)} THEN {not known} ELSE {outside} END"
    return (
        f"WHEN names IS NOT NULL AND {outside} THEN "
        f"'prediction.displayNames|not in the labels: ' || array_to_string("
        f"list_filter({parsed}, lambda x: NOT list_contains({label_list}, x)), ', ')"
    )


def build(
    paths: Sequence[str],
    *,
    strategy: str,
    seed: int,
    n: int,
    labels: Sequence[str] | None,
    edges: Sequence[float],
    max_bad: int,
    exclude_text_ids: bool,
    skip_rows: bool,
    common: Spelling,
    compression: str | None = None,
    positions: bool = False,
    exact_ties: bool = False,
) -> str:
    """The one-pass query (see the module docstring); `excl` and `skip` are registered tables.

    Without `positions` the scan runs on every core and gives counts only for bad lines;
    `positions` numbers the rows (`WITH ORDINALITY`, one thread: the engine numbers rows in
    order) to name each bad line, duplicate and line left to the exact reader.
    """
    uri_like = " OR ".join(f"starts_with(content, {_sql_str(p)})" for p in URI_PREFIXES)
    item = (
        f"CASE WHEN {uri_like} THEN content ELSE 'text:' || left(sha256(content), 20) END"
        if exclude_text_ids
        else "content"
    )
    bins = " + ".join(f"(s >= {float(e)!r})::INT" for e in edges[1:-1])
    dup = "(f, o) IN (SELECT f, o FROM skip)" if skip_rows else "false"
    top = "arg_min" if exact_ties else "arg_max"
    first_rows = bad_list = slow_list = "NULL"
    if positions:
        first_rows = "[" + ", ".join(f"min(o) FILTER (WHERE f = {i})" for i in range(len(paths)))
        first_rows += "]"
        bad_list = (
            f"arg_min({{'f': f, 'o': o, 'why': why}}, o, {int(max_bad)}) "
            f"FILTER (WHERE NOT ok AND why <> '{SLOW}')"
        )
        slow_list = f"list({{'f': f, 'o': o}}) FILTER (WHERE why = '{SLOW}')"
    return f"""
WITH src AS (
  SELECT file_index AS f, {"ordinality" if positions else "0"} AS o, instance, prediction
  FROM {reader(paths, compression)} {"WITH ORDINALITY" if positions else ""}
), typed AS (
  SELECT f, o, instance.content AS content,
    prediction.confidences AS cj, prediction.displayNames AS names, prediction.ids AS ids,
    instance IS NULL AND prediction IS NULL AS unparsed
  FROM src
), texts AS (
  SELECT *, CASE
      WHEN unparsed OR content IS NULL THEN '{SLOW}'
      WHEN content = '' THEN 'instance.content|missing or empty'
      WHEN cj IS NULL OR NOT starts_with(cj, '[') OR cj = '[]'
        THEN 'prediction.confidences|missing or empty'
      -- A string, `true`/`false` (the cast would turn them into numbers), NaN or Infinity;
      -- null, objects and nested lists become NULL in the cast (checked below).
      WHEN contains(cj, '"') OR contains(cj, 't') OR contains(cj, 'a') THEN CASE
        WHEN contains(cj, '"') OR contains(cj, 'true') OR contains(cj, 'false')
          THEN 'prediction.confidences|not all numbers'
        ELSE 'prediction.confidences|NaN or infinite value' END
    END AS why0
  FROM typed
), casted AS (
  SELECT *, CASE WHEN why0 IS NULL THEN TRY_CAST(cj AS DOUBLE[]) END AS v FROM texts
), checked AS (
  SELECT *, CASE
      WHEN why0 IS NOT NULL THEN why0
      WHEN v IS NULL OR len(v) <> list_count(v) THEN 'prediction.confidences|not all numbers'
      WHEN NOT isfinite(list_sum(v))
        THEN 'prediction.confidences|NaN or infinite value'
      WHEN list_min(v) < 0 THEN 'prediction.confidences|negative value'
      WHEN abs(list_sum(v) - 1.0) > {SUM_TOLERANCE!r}
        THEN 'prediction.confidences|' || printf('sums to %.4g, not 1', list_sum(v))
      WHEN names IS NOT NULL AND {_vector_len("names", common.names)} <> len(v)
        THEN 'prediction.displayNames|' || json_array_length(names) || ' names for ' ||
        len(v) || ' confidences'
      WHEN ids IS NOT NULL AND {_vector_len("ids", common.ids)} <> len(v)
        THEN 'prediction.ids|' || json_array_length(ids) || ' ids for ' || len(v) || ' confidences'
      {_label_check(labels, common.names)}
    END AS why
  FROM casted
), rows AS (
  SELECT f, o, content, cj, names, v, why, why IS NULL AS ok, why IS NULL AND {dup} AS dup
  FROM checked
), flagged AS (
  SELECT *, ok AND NOT dup AND {item} IN (SELECT id FROM excl) AS excluded FROM rows
), scored AS (
  SELECT *, CASE WHEN ok AND NOT dup AND NOT excluded THEN {score_sql(strategy, seed)} END AS s
  FROM flagged
), binned AS (
  SELECT *, CASE WHEN s IS NOT NULL THEN {bins} END AS b FROM scored
)
SELECT
  count(s) AS pool,
  count(*) AS rows,
  count(*) FILTER (WHERE excluded) AS excluded,
  [{", ".join(f"count(*) FILTER (WHERE b = {i})" for i in range(len(edges) - 1))}] AS bins,
  {first_rows} AS first_rows,
  list(hash(content)) FILTER (WHERE ok) AS hashes,
  -- The key is the score alone (fast); `exact_ties` orders a tied cut by the item.
  {top}({{'f': f, 'o': o, 'content': content, 'cj': cj, 'names': names, 's': s}},
        {"{'s': -s, 'c': content}" if exact_ties else "s"}, {int(n)})
    FILTER (WHERE s IS NOT NULL) AS top,
  count(*) FILTER (WHERE NOT ok AND why <> '{SLOW}') AS bad_count,
  count(*) FILTER (WHERE why = '{SLOW}') AS slow_count,
  {bad_list} AS bad,
  {slow_list} AS slow
FROM binned
"""


def run(con: duckdb.DuckDBPyConnection, sql: str) -> Pass:
    """Run a `build` query and unpack its one row (the items' hashes stay in Arrow/numpy)."""
    table = con.sql(sql).to_arrow_table()
    values = table.column("hashes").combine_chunks().values
    # The buffer itself: Arrow's to_numpy would import pandas (a third of a second).
    hashes = np.frombuffer(values.buffers()[1], dtype=np.uint64)[
        values.offset : values.offset + len(values)
    ]
    repeated = _repeated(hashes)
    row = table.drop_columns(["hashes"]).to_pylist()[0]
    candidates = list(row["top"] or [])
    candidates.sort(key=lambda c: (-c["s"], c["content"]))
    return Pass(
        pool=int(row["pool"]),
        rows=int(row["rows"]),
        excluded=int(row["excluded"]),
        repeated=repeated,
        histogram=[int(c) for c in row["bins"]],
        first_rows=[int(o) if o is not None else 0 for o in row["first_rows"] or []],
        candidates=candidates,
        bad_count=int(row["bad_count"]),
        slow_count=int(row["slow_count"]),
        bad=[(int(r["f"]), int(r["o"]), str(r["why"])) for r in (row["bad"] or [])],
        slow=[(int(r["f"]), int(r["o"])) for r in (row["slow"] or [])],
    )


def tied_cut(passed: Pass, k: int) -> bool:
    """Whether rows tied with the `k`-th candidate may have been left out (ask again with
    `exact_ties`): the score alone keys the candidates, so ties at the last place are arbitrary
    (ties go to the smaller item, `instance.content`)."""
    top = passed.candidates
    return len(top) > k and top[min(k, len(top)) - 1]["s"] == top[-1]["s"]


def table(con: duckdb.DuckDBPyConnection, name: str, **columns: tuple[str, list[Any]]) -> None:
    """A temporary table from Python lists: `table(con, "t", id=("VARCHAR", ids))`."""
    select = ", ".join(
        f"unnest(${i + 1}::{t}[]) AS {c}" for i, (c, (t, _)) in enumerate(columns.items())
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select}",
        [values for _, values in columns.values()],
    )


def _repeated(hashes: np.ndarray) -> list[int]:
    """The values that occur more than once (one sort: 8 bytes an item)."""
    if hashes.shape[0] < 2:
        return []
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    return np.unique(ordered[1:][same]).tolist()


def duplicates(
    con: duckdb.DuckDBPyConnection, sql: str, repeated: Sequence[int]
) -> list[tuple[int, int]]:
    """(file index, position) of every valid row whose item came earlier (the first is kept).

    `sql` is a `build` query; its valid rows with a `repeated` hash are read again.
    """
    table(con, "repeated", h=("UBIGINT", list(repeated)))
    inner = sql.split("\nSELECT\n", 1)[0]
    rows = con.execute(
        f"""{inner}
SELECT list({{'f': f, 'o': o, 'c': content}} ORDER BY f, o)
FROM rows WHERE ok AND hash(content) IN (SELECT h FROM repeated) GROUP BY hash(content)"""
    ).fetchall()
    out: list[tuple[int, int]] = []
    for (group,) in rows:
        seen: set[str] = set()
        for r in group:  # exact within a hash group: different items may share a hash
            if r["c"] in seen:
                out.append((int(r["f"]), int(r["o"])))
            seen.add(r["c"])
    return out
