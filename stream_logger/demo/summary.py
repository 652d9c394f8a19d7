"""The demo's closing summary, read back from the datamart with plain SQL.

:func:`summarize` runs a handful of queries against one subscription's payload table and the datamart's dead-letter
table and returns a :class:`Summary`: rows and requests, dead letters by reason, requests per minute over time,
the prediction mix, a first fairness view (the rate of ``Risk`` by sex and by age band, and the disparate impact
ratio), and beside it a quality view from the labelled rows (the subscription's ``labelled_`` view): accuracy by
sex and by age band. :func:`render` turns it into the text the demo prints, ending with the very SQL that produced
the numbers, ready to paste into ``psql``.

Column names are not guessed: the caller passes the mapping from field name to column (the datamart records it in
its subscriptions table); :data:`DEFAULT_COLUMNS` fills in whatever the mapping leaves out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .model import NO_RISK, RISK

__all__ = [
    "AGE_BANDS",
    "BUCKET_WIDTHS_S",
    "DEFAULT_COLUMNS",
    "FOUR_FIFTHS",
    "Bucket",
    "GroupAccuracy",
    "GroupRate",
    "Query",
    "Summary",
    "choose_bucket_width_s",
    "columns_from_fields",
    "quote_ident",
    "quote_literal",
    "render",
    "render_chart",
    "summarize",
]

DEFAULT_COLUMNS: Final[Mapping[str, str]] = {
    "scoring_id": "scoring_id",
    "scoring_timestamp": "scoring_timestamp",
    "Sex": "sex",
    "Age": "age",
    "prediction": "prediction",
    "Risk": "risk",
}
"""Field (or record attribute) name -> payload table column, used where the caller's mapping has no entry."""

AGE_BANDS: Final[tuple[tuple[str, int | None, int | None], ...]] = (
    ("19-25", None, 25),
    ("26-35", 26, 35),
    ("36-50", 36, 50),
    ("51+", 51, None),
)
"""The age bands of the fairness view: (label, lowest age or None, highest age or None), inclusive."""

BUCKET_WIDTHS_S: Final[tuple[int, ...]] = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
"""The widths the time buckets may take, in seconds; the narrowest that keeps within ``max_buckets`` wins."""

FOUR_FIFTHS: Final = 0.8
"""The usual warning line for the disparate impact ratio (the "four-fifths rule")."""

PROTECTED_GROUP: Final = "female"
REFERENCE_GROUP: Final = "male"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: wrapped in double quotes, inner double quotes doubled."""
    if not name or "\x00" in name:
        raise ValueError(f"not usable as an SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a SQL string literal: wrapped in single quotes, inner single quotes doubled."""
    if "\x00" in value:
        raise ValueError("a SQL string literal cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Query:
    """One SQL statement the summary ran, with a title; ``sql`` can be pasted into psql as it is."""

    title: str
    sql: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """Requests and rows whose ``scoring_timestamp`` falls in ``[start, start + width_s)``."""

    start: datetime
    width_s: int
    requests: int
    rows: int

    @property
    def requests_per_minute(self) -> float:
        """The bucket's requests, as a rate per minute."""
        return self.requests * 60.0 / self.width_s


@dataclass(frozen=True, slots=True)
class GroupRate:
    """How often one group (a sex, an age band) was predicted ``Risk`` and ``No Risk``."""

    group: str
    rows: int
    risk: int
    no_risk: int

    @property
    def risk_rate(self) -> float | None:
        """Share of the group's rows predicted ``Risk`` (``None`` for an empty group)."""
        return self.risk / self.rows if self.rows else None

    @property
    def no_risk_rate(self) -> float | None:
        """Share of the group's rows predicted ``No Risk``: the favourable outcome."""
        return self.no_risk / self.rows if self.rows else None


@dataclass(frozen=True, slots=True)
class GroupAccuracy:
    """How often the model was right for one group, over its labelled rows; and how often it said ``Risk`` to an
    applicant whose loan went well (``No Risk`` in truth): the error the demo's bias makes."""

    group: str
    labelled: int
    correct: int
    truly_no_risk: int = 0
    false_risk: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def false_risk_rate(self) -> float | None:
        """P(predicted Risk | truly No Risk)."""
        return self.false_risk / self.truly_no_risk if self.truly_no_risk else None


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything the demo reports at the end, as read from the datamart."""

    schema: str
    table: str
    total_rows: int
    total_requests: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    dead_letters: dict[str, int]
    buckets: list[Bucket]
    prediction_mix: dict[str, int]
    by_sex: list[GroupRate]
    by_age_band: list[GroupRate]
    queries: list[Query] = field(default_factory=list)
    accuracy_by_sex: list[GroupAccuracy] = field(default_factory=list)
    accuracy_by_age_band: list[GroupAccuracy] = field(default_factory=list)
    """Empty when there is no labelled view, or no label yet."""

    @property
    def dead_letters_total(self) -> int:
        """All dead letters, whatever their reason."""
        return sum(self.dead_letters.values())

    @property
    def disparate_impact(self) -> float | None:
        """P(No Risk | female) / P(No Risk | male); ``None`` when either group is empty or males never get it."""
        groups = {g.group: g for g in self.by_sex}
        protected, reference = groups.get(PROTECTED_GROUP), groups.get(REFERENCE_GROUP)
        if protected is None or reference is None:
            return None
        p, r = protected.no_risk_rate, reference.no_risk_rate
        if p is None or not r:
            return None
        return p / r


def columns_from_fields(fields: Iterable[Mapping[str, Any]] | str) -> dict[str, str]:
    """The field -> column mapping from a subscription's ``fields`` (``[{"name", "column", ...}, ...]``).

    Accepts the list itself or its JSON text (asyncpg returns ``jsonb`` as text unless a codec is set).
    """
    items = json.loads(fields) if isinstance(fields, str) else fields
    return {str(item["name"]): str(item["column"]) for item in items}


def choose_bucket_width_s(first: datetime, last: datetime, max_buckets: int = 24) -> int:
    """The narrowest of :data:`BUCKET_WIDTHS_S` that covers ``first``..``last`` in at most ``max_buckets``."""
    for width in BUCKET_WIDTHS_S:
        if _bucket_index(last, width) - _bucket_index(first, width) + 1 <= max_buckets:
            return width
    return BUCKET_WIDTHS_S[-1]


def _bucket_index(when: datetime, width_s: int) -> int:
    return math.floor(when.timestamp() / width_s)


def _band_case(age: str) -> str:
    arms = []
    for label, low, high in AGE_BANDS:
        conditions = []
        if low is not None:
            conditions.append(f"{age} >= {low}")
        if high is not None:
            conditions.append(f"{age} <= {high}")
        arms.append(f"            WHEN {' AND '.join(conditions)} THEN {quote_literal(label)}\n")
    return "CASE\n" + "".join(arms) + "       END"


class _Sql:
    """The summary's SQL statements for one payload table and one dead-letter table."""

    def __init__(
        self, schema: str, table: str, dead_letters_table: str, columns: Mapping[str, str], labelled: str | None
    ) -> None:
        cols = {**DEFAULT_COLUMNS, **columns}
        self.table = f"{quote_ident(schema)}.{quote_ident(table)}"
        self.labelled = None if labelled is None else f"{quote_ident(schema)}.{quote_ident(labelled)}"
        self.target = quote_ident(cols["Risk"])
        self.dead_letters = f"{quote_ident(schema)}.{quote_ident(dead_letters_table)}"
        self.scoring_id = quote_ident(cols["scoring_id"])
        self.timestamp = quote_ident(cols["scoring_timestamp"])
        self.sex = quote_ident(cols["Sex"])
        self.age = quote_ident(cols["Age"])
        self.prediction = quote_ident(cols["prediction"])
        self.risk, self.no_risk = quote_literal(RISK), quote_literal(NO_RISK)

    def totals(self) -> Query:
        return Query(
            "rows, requests and time span",
            f"SELECT count(*) AS rows, count(DISTINCT {self.scoring_id}) AS requests,\n"
            f"       min({self.timestamp}) AS first, max({self.timestamp}) AS last\n"
            f"FROM {self.table};",
        )

    def dead_letter_counts(self) -> Query:
        return Query(
            "dead letters by reason",
            f"SELECT error_code, count(*) AS messages\nFROM {self.dead_letters}\n"
            "GROUP BY error_code\nORDER BY 2 DESC, 1;",
        )

    def buckets(self, width_s: int) -> Query:
        bucket = f"to_timestamp(floor(extract(epoch FROM {self.timestamp}) / {width_s}) * {width_s})"
        return Query(
            f"requests per {_width_words(width_s)} bucket",
            f"SELECT {bucket} AS bucket,\n"
            f"       count(DISTINCT {self.scoring_id}) AS requests, count(*) AS rows\n"
            f"FROM {self.table}\nGROUP BY 1\nORDER BY 1;",
        )

    def prediction_mix(self) -> Query:
        return Query(
            "prediction mix",
            f"SELECT {self.prediction} AS prediction, count(*) AS rows\nFROM {self.table}\n"
            "GROUP BY 1\nORDER BY 2 DESC, 1;",
        )

    def _rates(self, group: str) -> str:
        return (
            f"SELECT {group} AS grp, count(*) AS rows,\n"
            f"       count(*) FILTER (WHERE {self.prediction} = {self.risk}) AS risk,\n"
            f"       count(*) FILTER (WHERE {self.prediction} = {self.no_risk}) AS no_risk,\n"
            f"       round(avg(({self.prediction} = {self.risk})::int), 3) AS risk_rate\n"
            f"FROM {self.table}\n"
        )

    def by_sex(self) -> Query:
        return Query(
            "Risk rate by sex",
            self._rates(self.sex) + f"WHERE {self.sex} IS NOT NULL\nGROUP BY 1\nORDER BY 1;",
        )

    def by_age_band(self) -> Query:
        return Query(
            "Risk rate by age band",
            self._rates(_band_case(self.age)) + f"WHERE {self.age} IS NOT NULL\nGROUP BY 1\nORDER BY min({self.age});",
        )

    def _accuracy(self, group: str) -> str:
        assert self.labelled is not None
        return (
            f"SELECT {group} AS grp, count(*) AS labelled,\n"
            f"       count(*) FILTER (WHERE {self.prediction} = {self.target}) AS correct,\n"
            f"       round(avg(({self.prediction} = {self.target})::int), 3) AS accuracy,\n"
            f"       count(*) FILTER (WHERE {self.target} = {self.no_risk}) AS truly_no_risk,\n"
            f"       count(*) FILTER (WHERE {self.target} = {self.no_risk} AND {self.prediction} = {self.risk})"
            " AS false_risk\n"
            f"FROM {self.labelled}\n"
        )

    def accuracy_by_sex(self) -> Query:
        return Query(
            "accuracy on the labelled rows, by sex",
            self._accuracy(self.sex) + f"WHERE {self.sex} IS NOT NULL\nGROUP BY 1\nORDER BY 1;",
        )

    def accuracy_by_age_band(self) -> Query:
        return Query(
            "accuracy on the labelled rows, by age band",
            self._accuracy(_band_case(self.age))
            + f"WHERE {self.age} IS NOT NULL\nGROUP BY 1\nORDER BY min({self.age});",
        )


async def summarize(
    conn: Any,
    schema: str,
    table: str,
    columns: Mapping[str, str] | None = None,
    *,
    dead_letters_table: str = "dead_letters",
    labelled: str | None = None,
    max_buckets: int = 24,
) -> Summary:
    """Read the demo summary from ``schema.table`` (one subscription's payload) and ``schema.dead_letters_table``.

    ``conn`` is an asyncpg connection (or pool). ``columns`` maps field names (``Sex``, ``Age``, ``prediction``,
    and the record attributes ``scoring_id``, ``scoring_timestamp``) to the table's columns; unmapped names fall
    back to :data:`DEFAULT_COLUMNS`. Time buckets are as narrow as :data:`BUCKET_WIDTHS_S` allows within
    ``max_buckets``; empty buckets between the first and the last request are filled with zeros. ``labelled`` names
    the subscription's labelled view (its payload rows with their latest label, in the column of ``Risk``): the
    accuracy by group is read from it, when it exists.
    """
    sql = _Sql(schema, table, dead_letters_table, columns or {}, labelled)
    queries: list[Query] = []

    async def fetch(query: Query) -> list[Any]:
        queries.append(query)
        return list(await conn.fetch(query.sql))

    (totals,) = await fetch(sql.totals())
    first: datetime | None = totals["first"]
    last: datetime | None = totals["last"]
    dead_letters = {row["error_code"]: row["messages"] for row in await fetch(sql.dead_letter_counts())}

    buckets: list[Bucket] = []
    if first is not None and last is not None:
        width = choose_bucket_width_s(first, last, max_buckets)
        counted = {
            _bucket_index(row["bucket"], width): (row["requests"], row["rows"])
            for row in await fetch(sql.buckets(width))
        }
        for index in range(_bucket_index(first, width), _bucket_index(last, width) + 1):
            requests, rows = counted.get(index, (0, 0))
            start = datetime.fromtimestamp(index * width, UTC)
            buckets.append(Bucket(start=start, width_s=width, requests=requests, rows=rows))

    mix = {row["prediction"]: row["rows"] for row in await fetch(sql.prediction_mix())}

    def rates(rows: Sequence[Any]) -> list[GroupRate]:
        return [GroupRate(row["grp"], row["rows"], row["risk"], row["no_risk"]) for row in rows]

    by_sex = rates(await fetch(sql.by_sex()))
    by_age = rates(await fetch(sql.by_age_band()))

    def accuracies(rows: Sequence[Any]) -> list[GroupAccuracy]:
        return [
            GroupAccuracy(row["grp"], row["labelled"], row["correct"], row["truly_no_risk"], row["false_risk"])
            for row in rows
        ]

    accuracy_by_sex: list[GroupAccuracy] = []
    accuracy_by_age: list[GroupAccuracy] = []
    if sql.labelled is not None and await conn.fetchval("SELECT to_regclass($1)", sql.labelled) is not None:
        accuracy_by_sex = accuracies(await fetch(sql.accuracy_by_sex()))
        accuracy_by_age = accuracies(await fetch(sql.accuracy_by_age_band()))
    return Summary(
        schema=schema,
        table=table,
        total_rows=totals["rows"],
        total_requests=totals["requests"],
        first_timestamp=first,
        last_timestamp=last,
        dead_letters=dead_letters,
        buckets=buckets,
        prediction_mix=mix,
        by_sex=by_sex,
        by_age_band=by_age,
        queries=queries,
        accuracy_by_sex=accuracy_by_sex,
        accuracy_by_age_band=accuracy_by_age,
    )


def _bucket_label_format(buckets: Sequence[Bucket]) -> str:
    width = buckets[0].width_s
    if width >= 86400:
        return "%Y-%m-%d"
    many_days = buckets[0].start.date() != (buckets[-1].start + timedelta(seconds=width - 1)).date()
    clock = "%H:%M:%S" if width < 60 else "%H:%M"
    return f"%m-%d {clock}" if many_days else clock


def render_chart(buckets: Sequence[Bucket], *, width: int = 72) -> str:
    """A horizontal bar chart of requests per minute, one line per bucket, no line longer than ``width``.

    Labels are the bucket start times in UTC; a bucket with any request gets at least one ``#``.
    """
    if not buckets:
        return "(no requests)"
    fmt = _bucket_label_format(buckets)
    labels = [b.start.strftime(fmt) for b in buckets]
    values = [f"{_rate_text(b.requests_per_minute)}/min" for b in buckets]
    label_w, value_w = max(map(len, labels)), max(map(len, values))
    bar_w = max(1, width - label_w - value_w - 4)  # " | " after the label, " " before the value
    peak = max(b.requests_per_minute for b in buckets)
    lines = []
    for bucket, label, value in zip(buckets, labels, values, strict=True):
        length = 0
        if peak > 0 and bucket.requests:
            length = max(1, round(bar_w * bucket.requests_per_minute / peak))
        lines.append(f"{label:>{label_w}} | {'#' * length:<{bar_w}} {value:>{value_w}}")
    return "\n".join(lines)


def _rate_text(per_minute: float) -> str:
    # Back-dated history spread over days gives fractions of a request per minute: keep two significant digits.
    if per_minute >= 100:
        return f"{per_minute:,.0f}"
    if per_minute >= 1 or per_minute == 0:
        return f"{per_minute:.1f}"
    return f"{per_minute:.2g}"


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def _rate_lines(groups: Sequence[GroupRate]) -> list[str]:
    name_w = max([len(g.group) for g in groups] + [5])
    return [
        f"    {g.group:<{name_w}}  rows {g.rows:>7,}   Risk {_pct(g.risk_rate)}   No Risk {_pct(g.no_risk_rate)}"
        for g in groups
    ]


def _accuracy_lines(groups: Sequence[GroupAccuracy]) -> list[str]:
    name_w = max([len(g.group) for g in groups] + [5])
    return [
        f"    {g.group:<{name_w}}  labelled {g.labelled:>7,}   accuracy {_pct(g.accuracy)}"
        f"   false Risk {_pct(g.false_risk_rate)}"
        for g in groups
    ]


def render(summary: Summary, *, width: int = 78) -> str:
    """The summary as the text the demo prints at the end (lines at most ``width`` long, except the SQL)."""
    out: list[str] = [f"Datamart summary: {quote_ident(summary.schema)}.{quote_ident(summary.table)}", ""]
    out.append(f"  rows: {summary.total_rows:,} from {summary.total_requests:,} requests")
    if summary.first_timestamp and summary.last_timestamp:
        first = summary.first_timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        last = summary.last_timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"  scoring_timestamp: {first} .. {last} UTC")
    out.append(f"  dead letters: {summary.dead_letters_total:,}")
    for code, count in sorted(summary.dead_letters.items(), key=lambda item: (-item[1], item[0])):
        out.append(f"    {code:<20} {count:>6,}")

    out += ["", "Requests per minute over time (UTC)"]
    if summary.buckets:
        out[-1] += f", {_width_words(summary.buckets[0].width_s)} buckets"
    out += ["  " + line for line in render_chart(summary.buckets, width=width - 2).splitlines()]

    out += ["", "Prediction mix"]
    total = sum(summary.prediction_mix.values())
    for label, count in sorted(summary.prediction_mix.items(), key=lambda item: (-item[1], str(item[0]))):
        out.append(f"    {label!s:<10} {count:>8,}  {_pct(count / total if total else None)}")

    out += ["", "Fairness: rate of Risk predictions by group"]
    out += ["  by sex", *_rate_lines(summary.by_sex)]
    out += ["  by age band", *_rate_lines(summary.by_age_band)]
    di = summary.disparate_impact
    out += ["", '  Disparate impact (favourable outcome "No Risk"):']
    if di is None:
        out.append("    P(No Risk | female) / P(No Risk | male) = n/a (a group is missing)")
    else:
        out.append(f"    P(No Risk | female) / P(No Risk | male) = {di:.2f}")
    out.append(f"    Below {FOUR_FIFTHS:.2f} is the usual warning line (the four-fifths rule).")
    if di is not None:
        out.append("    Here: " + ("BELOW the line, a warning." if di < FOUR_FIFTHS else "above the line."))
    out.append("  (The demo model adds risk for women and the young on purpose, so that this")
    out.append("  view has something to show; see stream_logger/demo/model.py.)")

    out += ["", "Quality: accuracy on the labelled rows (the delayed true outcomes) by group"]
    if not summary.accuracy_by_sex and not summary.accuracy_by_age_band:
        out.append("  (no labels yet)")
    else:
        out += ["  by sex", *_accuracy_lines(summary.accuracy_by_sex)]
        out += ["  by age band", *_accuracy_lines(summary.accuracy_by_age_band)]
        out.append('  "false Risk": told Risk, though the loan went well; the true outcomes do not')
        out.append("  depend on sex or age, so the bias above shows here as more false Risk.")

    out += ["", "The SQL behind these numbers (paste into psql):"]
    for query in summary.queries:
        out += ["", f"-- {query.title}", query.sql]
    return "\n".join(out)


def _width_words(width_s: int) -> str:
    if width_s % 86400 == 0:
        return f"{width_s // 86400}-day"
    if width_s % 3600 == 0:
        return f"{width_s // 3600}-hour"
    if width_s % 60 == 0:
        return f"{width_s // 60}-minute"
    return f"{width_s}-second"
