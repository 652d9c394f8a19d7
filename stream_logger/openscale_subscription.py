"""A subscription of the OpenScale-style client (:mod:`stream_logger.openscale_client`): the asset it monitors, its
payload logging (``subscription.payload_logging``) and its feedback logging (``subscription.feedback_logging``).

A subscription's id (``uid``) is its asset's ``source_uid``. Its declaration comes from the asset: categorical
features are text, the probability column an array of numbers, the prediction a number for a regression; a field
whose type the asset does not tell (the other features, a classifier's prediction) is declared with the type of its
values in the first records this client stores, and with the asset's role (so a prediction column named
``predictedLabel`` is the prediction). The label column is the subscription's target: a float for a regression,
else typed from the first labels, by the worker. Records go through Kafka; every count and read first waits for
what this client stored (:meth:`~stream_logger.openscale_session.ClientSession.caught_up`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import asyncpg

from .contract import Table
from .errors import RecordError, StreamLoggerError, SubscriptionError, describe
from .feedback_tables import feedback_table_exists
from .identifiers import feedback_names_for, quote_ident
from .openscale import PayloadRecord
from .openscale_feedback import feedback_table
from .openscale_session import ClientSession
from .readback import feedback_rows, payload_rows, to_frame
from .registry import Registry, declare, list_subscriptions
from .scoring_call import as_table, build_record
from .subscription import TARGET, role_source
from .subscription import Subscription as DeclaredSubscription

__all__ = [
    "FEEDBACK_ROWS_PER_RECORD",
    "CustomMachineLearningAsset",
    "FeedbackLogging",
    "InputDataType",
    "PayloadLogging",
    "ProblemType",
    "Subscription",
    "TableFormat",
    "declared_fields",
    "find_subscription",
    "payload_records",
    "table_content",
]

FEEDBACK_ROWS_PER_RECORD: Final = 1000
"""Feedback rows sent in one feedback record (a store of more sends several)."""

TableFormat = Literal["pandas", "python"]
"""``get_table_content``'s formats: a pandas DataFrame, or OpenScale's ``{"fields": [...], "values": [[...]]}``."""


class ProblemType:
    """What the model predicts, as OpenScale names it (``problem_type=ProblemType.BINARY_CLASSIFICATION``)."""

    BINARY_CLASSIFICATION: Final = "binary"
    MULTICLASS_CLASSIFICATION: Final = "multiclass"
    REGRESSION: Final = "regression"


class InputDataType:
    """What the model reads, as OpenScale names it; kept with the asset only."""

    STRUCTURED: Final = "structured"
    UNSTRUCTURED_IMAGE: Final = "unstructured_image"
    UNSTRUCTURED_TEXT: Final = "unstructured_text"


@dataclass(frozen=True)
class CustomMachineLearningAsset:
    """A model served by a custom engine, as OpenScale's ``CustomMachineLearningAsset`` describes it.

    ``source_uid`` becomes the subscription id. ``feature_columns`` and ``categorical_columns`` (text) are the
    request's fields, ``prediction_column`` and ``probability_column`` the response's prediction and probability,
    ``label_column`` the ground truth of feedback rows. ``binding_uid``, ``input_data_type``,
    ``training_data_reference`` and ``transaction_id_column`` are kept with the asset (in this client's
    ``get_details()``), not in the datamart.
    """

    source_uid: str
    binding_uid: str | None = None
    problem_type: str | None = None
    input_data_type: str | None = None
    training_data_reference: Any = None
    label_column: str | None = None
    prediction_column: str | None = None
    probability_column: str | None = None
    transaction_id_column: str | None = None
    feature_columns: Sequence[str] | None = None
    categorical_columns: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source_uid, str) or not self.source_uid:
            raise SubscriptionError("CustomMachineLearningAsset: source_uid (the subscription id) must be a string")
        for name in ("feature_columns", "categorical_columns"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, str) or not all(isinstance(c, str) for c in value)):
                raise SubscriptionError(f"CustomMachineLearningAsset: {name} must be a list of column names")
        if self.problem_type is not None and self.problem_type not in (
            ProblemType.BINARY_CLASSIFICATION,
            ProblemType.MULTICLASS_CLASSIFICATION,
            ProblemType.REGRESSION,
        ):
            raise SubscriptionError(
                f"CustomMachineLearningAsset: problem_type must be 'binary', 'multiclass' or 'regression', "
                f"not {self.problem_type!r}"
            )

    @property
    def features(self) -> list[str]:
        """The feature columns, then the categorical ones not among them, each once."""
        names = [*(self.feature_columns or ()), *(self.categorical_columns or ())]
        return list(dict.fromkeys(names))


def declared_fields(asset: CustomMachineLearningAsset) -> list[dict[str, str]]:
    """The fields of ``asset`` whose type it tells, as a declaration's ``fields`` (see the module's docstring)."""
    categorical = set(asset.categorical_columns or ())
    fields = [{"name": name, "type": "text", "role": "feature"} for name in asset.features if name in categorical]
    if asset.prediction_column is not None and asset.problem_type == ProblemType.REGRESSION:
        fields.append({"name": asset.prediction_column, "type": "float", "role": "prediction"})
    if asset.probability_column is not None:
        fields.append({"name": asset.probability_column, "type": "float_array", "role": "probability"})
    if asset.label_column is not None and asset.problem_type == ProblemType.REGRESSION:
        fields.append({"name": asset.label_column, "type": "float", "role": TARGET})
    return fields


def payload_records(records: Any) -> list[PayloadRecord]:
    """``payload_logging.store``'s ``records``: a :class:`PayloadRecord`, a dict of its fields (the newer client's
    body item), or a list of those; a RecordError names the item at fault."""
    if records is None:
        return []
    if isinstance(records, PayloadRecord | Mapping):
        records = [records]
    if not isinstance(records, Sequence) or isinstance(records, str | bytes):
        raise RecordError(
            "invalid_record", "records", f"expected a list of PayloadRecord or dicts, not {type(records).__name__}"
        )
    return [
        r if isinstance(r, PayloadRecord) else PayloadRecord.from_json(r, f"records[{i}]")
        for i, r in enumerate(records)
    ]


async def find_subscription(conn: asyncpg.Connection, schema: str, subscription_id: str) -> DeclaredSubscription | None:
    """The datamart's subscription ``subscription_id``, or None."""
    for sub in await list_subscriptions(conn, schema):
        if sub.subscription_id == subscription_id:
            return sub
    return None


def _declared(sub: DeclaredSubscription, field: Mapping[str, str]) -> bool:
    """Whether ``sub`` already has the field of this declaration (the target: any target)."""
    if field["role"] == TARGET:
        return sub.target is not None
    return sub.field_for(role_source(field["role"]), field["name"]) is not None


def table_content(rows: list[dict[str, Any]], format: TableFormat) -> Any:
    """Rows read back, as a DataFrame or as OpenScale's ``{"fields", "values"}``."""
    if format == "pandas":
        return to_frame(rows)
    if format == "python":
        fields = list(rows[0]) if rows else []
        return {"fields": fields, "values": [list(r.values()) for r in rows]}
    raise StreamLoggerError(f'format must be "pandas" or "python", not {format!r}')


def show(rows: list[dict[str, Any]]) -> None:
    """Print rows as a table: a DataFrame's text when pandas is there, else one tab-separated line a row."""
    try:
        print(to_frame(rows).to_string())
    except StreamLoggerError:  # no pandas
        if rows:
            print("\t".join(rows[0]))
        for row in rows:
            print("\t".join(str(v) for v in row.values()))


class Subscription:
    """A monitored model; ``uid`` is its subscription id. Made by ``data_mart.subscriptions.add()`` or ``get()``."""

    def __init__(
        self,
        session: ClientSession,
        uid: str,
        asset: CustomMachineLearningAsset | None = None,
        deployment_id: str | None = None,
    ) -> None:
        self.uid = uid
        self.asset = asset
        """The asset it was added with in this client (None for one read from the datamart)."""
        self.deployment_id = deployment_id
        self.payload_logging = PayloadLogging(session, self)
        self.feedback_logging = FeedbackLogging(session, self)

    def __repr__(self) -> str:
        return f"Subscription(uid={self.uid!r})"

    def declaration(self, records: Sequence[PayloadRecord], schema: str) -> dict[str, Any] | None:
        """What to declare before ``records`` are stored: the asset's fields whose type only the records tell, with
        their types and the asset's roles; None when there is nothing to add (or no asset to say what fields are)."""
        if self.asset is None or not records:
            return None
        asset = self.asset
        built = [build_record(request=r.request, response=r.response, subscription_id=self.uid) for r in records]
        registry = Registry(
            schema,
            prediction_field=asset.prediction_column or "prediction",
            probability_field=asset.probability_column or "probability",
        )
        fields = [*declared_fields(asset)]
        known = {f["name"] for f in fields}
        fields += [
            {"name": f.name, "type": f.type, "role": f.role}
            for f in registry.fields_to_declare(built)
            if f.name not in known
        ]
        if not fields:
            return None
        return {"subscription_id": self.uid, "deployment_id": self.deployment_id, "fields": fields}

    def get_details(self) -> dict[str, Any]:
        """The subscription: its uid, deployment, payload table and fields (from the datamart), and its asset when
        this client added it."""
        session = self.payload_logging.session

        async def read(conn: asyncpg.Connection) -> DeclaredSubscription | None:
            return await find_subscription(conn, session.schema, self.uid)

        sub = session.database(read)
        details: dict[str, Any] = {"uid": self.uid, "subscription_id": self.uid, "deployment_id": self.deployment_id}
        if sub is not None:
            details |= {
                "deployment_id": sub.deployment_id or self.deployment_id,
                "table": sub.table,
                "fields": [f.as_json() for f in sub.fields],
            }
        if self.asset is not None:
            details["asset"] = {k: v for k, v in asdict(self.asset).items() if v is not None}
        return details


class _Logging:
    """What payload and feedback logging share: the client's session and subscription, and counts and reads of the
    subscription's ``_reader`` rows (the payload's or the labels'), once what this client stored is written."""

    _reader: Any  # readback.payload_rows or readback.feedback_rows

    def __init__(self, session: ClientSession, subscription: Subscription) -> None:
        self.session = session
        self.subscription = subscription

    def enable(self, *args: Any, **kwargs: Any) -> None:
        """Logging is always on: accepted, for scripts that call it."""

    def show_table(self, limit: int | None = 10) -> None:
        """Print the newest ``limit`` rows."""
        show(self._rows(limit))

    async def _table_of(self, conn: asyncpg.Connection, sub: DeclaredSubscription) -> str | None:
        raise NotImplementedError

    def _count(self) -> int:
        session = self.session
        session.caught_up()

        async def count(conn: asyncpg.Connection) -> int:
            sub = await find_subscription(conn, session.schema, self.subscription.uid)
            table = None if sub is None else await self._table_of(conn, sub)
            if table is None:
                return 0
            n: int = await conn.fetchval(f"SELECT count(*) FROM {quote_ident(session.schema)}.{quote_ident(table)}")
            return n

        return session.database(count)

    def _rows(self, limit: int | None) -> list[dict[str, Any]]:
        session = self.session
        session.caught_up()
        reader = type(self)._reader

        async def read(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            if await find_subscription(conn, session.schema, self.subscription.uid) is None:
                return []
            rows: list[dict[str, Any]] = await reader(conn, session.schema, self.subscription.uid, limit=limit)
            return rows

        return session.database(read)


class PayloadLogging(_Logging):
    """``subscription.payload_logging``: store payload records, count them, read them back."""

    _reader = payload_rows

    def __init__(self, session: ClientSession, subscription: Subscription) -> None:
        super().__init__(session, subscription)
        self._declared = False

    def store(self, records: Any = None, deployment_id: str | None = None) -> list[str]:
        """Store payload records: :class:`PayloadRecord` objects, dicts of their fields, or a list of those;
        returns their scoring ids. They go through Kafka (see the module's docstring). An invalid record raises
        :class:`~stream_logger.errors.RecordError` naming it; the records before it are stored."""
        items = payload_records(records)
        if not items:
            return []
        session = self.session
        self._declare(items)
        emitter = session.emitter()
        deployment = deployment_id or self.subscription.deployment_id
        ids: list[str] = []
        try:
            for i, record in enumerate(items):
                try:
                    ids.append(record.log_to(emitter, subscription_id=self.subscription.uid, deployment_id=deployment))
                except RecordError as exc:
                    path = f"records[{i}]" + (f".{exc.path}" if exc.path else "")
                    raise RecordError(exc.code, path, exc.detail) from None
        finally:
            session.stored(len(ids))
        return ids

    def _declare(self, records: Sequence[PayloadRecord]) -> None:
        """Declare what the asset says and the first records tell (once per client), before they are sent."""
        if self._declared:
            return
        session = self.session
        try:
            spec = self.subscription.declaration(records, session.schema)
        except RecordError as exc:
            raise RecordError(exc.code, f"records.{exc.path}" if exc.path else "records", exc.detail) from None
        except (TypeError, ValueError) as exc:  # a value of the caller's that cannot be read
            raise RecordError("invalid_record", "records", describe(exc)) from None
        if spec is not None:

            async def run(conn: asyncpg.Connection) -> None:
                sub = await find_subscription(conn, session.schema, self.subscription.uid)
                if sub is not None:  # declared before (by an earlier run, say): only what it lacks is added
                    spec["fields"] = [f for f in spec["fields"] if not _declared(sub, f)]
                if spec["fields"]:
                    await declare(conn, session.schema, spec)

            session.database(run)
        self._declared = True

    def get_records_count(self) -> int:
        """How many payload rows the datamart holds for this subscription (one a scored row), once what this client
        stored is written (see :meth:`~stream_logger.openscale_session.ClientSession.caught_up`)."""
        return self._count()

    def get_table_content(self, format: TableFormat = "pandas", limit: int | None = 1000) -> Any:
        """The payload rows, newest first, at most ``limit`` (None: all), with columns named as the record's
        fields; a DataFrame (``format="pandas"``) or ``{"fields", "values"}`` (``format="python"``)."""
        return table_content(self._rows(limit), format)

    async def _table_of(self, conn: asyncpg.Connection, sub: DeclaredSubscription) -> str | None:
        return sub.table


class FeedbackLogging(_Logging):
    """``subscription.feedback_logging``: store feedback rows (features and the label, as OpenScale's feedback
    table holds them), count them, read them back. The label is in the asset's ``label_column`` (else the
    subscription's target)."""

    _reader = feedback_rows

    def store(
        self,
        feedback_data: Any,
        fields: Sequence[str] | None = None,
        feedback_format: str | None = None,
        data_header: bool = False,
        data_delimiter: str = ",",
    ) -> list[str]:
        """Store feedback rows: a list of rows as lists (``fields`` names their columns; None: the asset's features
        then its label column), CSV text (a header line with ``data_header=True``; values typed as the
        subscription's columns, see :mod:`stream_logger.openscale_feedback`), or a DataFrame or list of dicts.
        Returns the ids of the feedback records sent (one a thousand rows). ``feedback_format`` (``"list"`` or
        ``"csv"``) is checked against the data when given."""
        session, uid = self.session, self.subscription.uid
        if isinstance(feedback_data, list | tuple) and not feedback_data:
            return []

        async def read(conn: asyncpg.Connection) -> DeclaredSubscription | None:
            return await find_subscription(conn, session.schema, uid)

        sub = session.database(read)
        label = self._label_field(sub)
        table = self._table(feedback_data, fields, feedback_format, data_header, data_delimiter, sub, label)
        if label not in table.fields:
            raise RecordError("invalid_record", "fields", f"no {label!r} column: the label (the target of {uid!r})")
        emitter = session.emitter()
        ids: list[str] = []
        try:
            for start in range(0, len(table.values), FEEDBACK_ROWS_PER_RECORD):
                rows = table.values[start : start + FEEDBACK_ROWS_PER_RECORD]
                data = {"fields": table.fields, "values": rows}
                try:
                    ids.append(emitter.log_feedback(subscription_id=uid, data=data, label_field=label))
                except RecordError as exc:
                    path = exc.path.replace("data.values[", "feedback_data[", 1) if exc.path else "feedback_data"
                    raise RecordError(exc.code, path, exc.detail) from None
        finally:
            session.stored(len(ids))
        return ids

    def _label_field(self, sub: DeclaredSubscription | None) -> str:
        asset = self.subscription.asset
        if asset is not None and asset.label_column is not None:
            return asset.label_column
        if sub is not None and sub.target is not None:
            return sub.target.name
        raise SubscriptionError(
            f"subscription {self.subscription.uid!r} has no label column: add it with "
            "CustomMachineLearningAsset(label_column=...) first"
        )

    def _table(
        self,
        data: Any,
        fields: Sequence[str] | None,
        feedback_format: str | None,
        data_header: bool,
        data_delimiter: str,
        sub: DeclaredSubscription | None,
        label: str,
    ) -> Table:
        is_csv = isinstance(data, str)
        if feedback_format is not None and feedback_format.lower() not in ("list", "csv"):
            raise RecordError("invalid_record", "feedback_format", f'"list" or "csv", not {feedback_format!r}')
        if feedback_format is not None and (feedback_format.lower() == "csv") != is_csv:
            raise RecordError(
                "invalid_record", "feedback_format", f"{feedback_format!r}, but the data is {type(data).__name__}"
            )
        if not is_csv and not (isinstance(data, list) and data and all(isinstance(r, list | tuple) for r in data)):
            table = as_table(data, "feedback_data")  # a DataFrame, a list of dicts, {"fields", "values"}
            assert table is not None
            return table
        asset = self.subscription.asset
        if fields is None and not data_header and asset is not None and asset.feature_columns:
            fields = [*asset.features, label]
        types = {} if sub is None else {f.name: f.type for f in sub.fields}
        if sub is not None and sub.target is not None:
            types[label] = sub.target.type
        return feedback_table(data, fields, data_header=data_header, data_delimiter=data_delimiter, types=types)

    def get_records_count(self) -> int:
        """How many feedback rows the datamart holds for this subscription, once what this client stored is
        written."""
        return self._count()

    def get_table_content(self, format: TableFormat = "pandas", limit: int | None = None) -> Any:
        """The feedback rows, newest first, at most ``limit`` (None: all): the label under its field's name and the
        payload fields' values; a DataFrame (``format="pandas"``) or ``{"fields", "values"}``."""
        return table_content(self._rows(limit), format)

    async def _table_of(self, conn: asyncpg.Connection, sub: DeclaredSubscription) -> str | None:
        if sub.target is None or not await feedback_table_exists(conn, sub):
            return None
        return feedback_names_for(sub.table)[0]
