"""IBM Watson OpenScale's Python client, in the shapes a script for a custom (non-Watson) engine is written against,
over stream-logger's Kafka topic and PostgreSQL datamart. A ported script changes its imports and its credentials::

    from stream_logger.openscale_client import APIClient, CustomMachineLearningAsset, PayloadRecord

    client = APIClient({"bootstrap_servers": "127.0.0.1:9092", "topic": "scoring", "in_process_worker": True})
    client.data_mart.setup(db_credentials={"db_type": "postgresql", "uri": "postgres://..."}, schema="datamart")
    subscription = client.data_mart.subscriptions.add(CustomMachineLearningAsset("german_credit", ...))
    subscription.payload_logging.store(records=[PayloadRecord(request=..., response=...)])
    subscription.payload_logging.get_records_count()

What differs: storing goes through Kafka, so a count or a read shows what a worker has written. With
``"in_process_worker": True`` the client runs a worker in its own process (a thread, until :meth:`APIClient.close`,
the end of ``with APIClient(...)``, or interpreter exit) and every count and read first waits, up to
``catch_up_timeout_s``, until that worker has written what the client stored. The credentials are
:mod:`stream_logger.openscale_credentials`'s.

Only shapes are reproduced, from the clients' public signatures; nothing comes from IBM's packages.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import asyncpg

from . import datamart
from .config import redact_dsn
from .errors import CredentialsError, StreamLoggerError, SubscriptionError
from .openscale import PayloadRecord
from .openscale_credentials import client_settings, dsn_from_db_credentials
from .openscale_session import DEFAULT_CATCH_UP_TIMEOUT_S, ClientSession, in_process_group
from .openscale_subscription import (
    CustomMachineLearningAsset,
    InputDataType,
    ProblemType,
    Subscription,
    declared_fields,
    find_subscription,
)
from .registry import declare, list_subscriptions

__all__ = [
    "APIClient",
    "Bindings",
    "CustomMachineLearningAsset",
    "CustomMachineLearningInstance",
    "DataMart",
    "DataSets",
    "GenericMachineLearningInstance",
    "InputDataType",
    "PayloadRecord",
    "ProblemType",
    "Subscription",
    "Subscriptions",
]


class APIClient:
    """The client: ``client.data_mart`` (setup, bindings, subscriptions) and ``client.data_sets``.

    ``credentials`` name Kafka, the topic and optionally the database (see
    :mod:`stream_logger.openscale_credentials`); None, or a missing key, means the usual settings
    (``STREAM_LOGGER_*``, the dev stack's). Nothing connects until it is used. ``close()`` (or the end of ``with``,
    or interpreter exit) delivers what was stored and stops the in-process worker.
    """

    def __init__(
        self, credentials: Mapping[str, Any] | None = None, *, catch_up_timeout_s: float = DEFAULT_CATCH_UP_TIMEOUT_S
    ) -> None:
        self._session = ClientSession(client_settings(credentials), catch_up_timeout_s)
        self.data_mart = DataMart(self._session)
        self.data_sets = DataSets(self.data_mart.subscriptions)

    def __repr__(self) -> str:
        return f"APIClient({self._session.client!r})"

    @property
    def topic(self) -> str:
        """The Kafka topic records are stored through."""
        return self._session.topic

    def close(self) -> None:
        """Deliver what was stored, wait for the in-process worker to write it (up to ``catch_up_timeout_s``) and
        stop it. Idempotent; a closed client cannot be used again."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DataMart:
    """``client.data_mart``: the datamart schema, its bindings and its subscriptions."""

    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self.bindings = Bindings()
        self.subscriptions = Subscriptions(session)

    def setup(
        self,
        db_credentials: Mapping[str, Any] | str | None = None,
        schema: str | None = None,
        internal_db: bool = False,
    ) -> None:
        """Create the datamart ``schema`` (the credentials', else ``datamart``) in the database ``db_credentials``
        name, or upgrade it (idempotent), and use it from now on. ``db_credentials``: OpenScale's PostgreSQL
        credentials (``{"db_type": "postgresql", "uri": ...}`` or ``hostname``, ``port``, ``username``,
        ``password``, ``db``), a DSN, or None (and ``internal_db=True``) for the client's usual database."""
        session = self._session
        if internal_db and db_credentials is not None:
            raise CredentialsError("give db_credentials or internal_db=True, not both")
        dsn = dsn_from_db_credentials(db_credentials, session.client.settings.dsn)
        target = session.schema if schema is None else schema
        session.use(target, dsn)

        async def run(conn: asyncpg.Connection) -> None:
            await datamart.setup(conn, target)

        session.database(run)

    def get_details(self) -> dict[str, Any]:
        """The datamart: its schema, database (the DSN, password hidden), version, Kafka topic and servers, the
        in-process worker's group (or None), row counts per subscription, dead letters, stored offsets."""
        session = self._session

        async def read(conn: asyncpg.Connection) -> dict[str, Any]:
            return await datamart.info(conn, session.schema)

        info = session.database(read)
        return {
            "schema": session.schema,
            "database": redact_dsn(session.dsn),
            "topic": session.topic,
            "bootstrap_servers": session.settings.bootstrap_servers,
            "in_process_worker": in_process_group(session.schema) if session.client.in_process_worker else None,
            "bindings": self.bindings.get_details(),
            **{k: v for k, v in info.items() if k != "schema"},
        }


class GenericMachineLearningInstance:
    """A serving engine, as OpenScale's binding shapes name it: accepted and kept, never used (records come from
    the emitter, not from an engine). Values of keywords naming a password, key or secret are never shown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}=***" if any(s in k.lower() for s in ("password", "key", "secret", "token")) else f"{k}={v!r}"
            for k, v in self.kwargs.items()
        )
        return f"{type(self).__name__}({shown})"


class CustomMachineLearningInstance(GenericMachineLearningInstance):
    """A custom engine (``CustomMachineLearningInstance(url, username=..., password=...)``): a harmless shape."""


class Bindings:
    """``client.data_mart.bindings``: the engines a script binds, kept by this client only (the datamart needs
    none)."""

    def __init__(self) -> None:
        self._bindings: dict[str, tuple[str, Any]] = {}

    def add(self, name: str, instance: Any = None) -> str:
        """Bind an engine; returns its uid (new and random)."""
        uid = uuid.uuid4().hex
        self._bindings[uid] = (name, instance)
        return uid

    def get_uids(self) -> list[str]:
        return list(self._bindings)

    def get_details(self, binding_uid: str | None = None) -> Any:
        """``{"uid", "name", "instance"}`` of one binding, or a list of all of them."""
        details = [{"uid": u, "name": n, "instance": repr(i)} for u, (n, i) in self._bindings.items()]
        if binding_uid is None:
            return details
        for d in details:
            if d["uid"] == binding_uid:
                return d
        raise StreamLoggerError(f"no binding {binding_uid!r} in this client")


class Subscriptions:
    """``client.data_mart.subscriptions``: add (declare) a monitored model, get one, list them."""

    def __init__(self, session: ClientSession) -> None:
        self._session = session
        self._added: dict[str, Subscription] = {}

    def add(
        self, asset: CustomMachineLearningAsset, deployment_uids: Sequence[str] | str | None = None
    ) -> Subscription:
        """Declare a subscription for ``asset`` (its id is ``asset.source_uid``; the first of ``deployment_uids``
        is its deployment id) and return it. Fields whose type the asset does not tell are declared when the first
        records are stored. Adding it again adds what is new."""
        if not isinstance(asset, CustomMachineLearningAsset):
            raise SubscriptionError(
                f"subscriptions.add() takes a CustomMachineLearningAsset, not {type(asset).__name__}"
            )
        if isinstance(deployment_uids, str):
            deployment_uids = [deployment_uids]
        deployment_id = deployment_uids[0] if deployment_uids else None
        sub = Subscription(self._session, asset.source_uid, asset, deployment_id)
        fields = declared_fields(asset)
        if fields:
            spec = {"subscription_id": asset.source_uid, "deployment_id": deployment_id, "fields": fields}
            schema = self._session.schema

            async def run(conn: asyncpg.Connection) -> None:
                await declare(conn, schema, spec)

            self._session.database(run)
        self._added[sub.uid] = sub
        return sub

    def get(self, subscription_uid: str) -> Subscription:
        """The subscription ``subscription_uid`` (added by this client, or declared in the datamart)."""
        if subscription_uid in self._added:
            return self._added[subscription_uid]
        schema = self._session.schema

        async def read(conn: asyncpg.Connection) -> Any:
            return await find_subscription(conn, schema, subscription_uid)

        found = self._session.database(read)
        if found is None:
            raise SubscriptionError(f"datamart {schema!r} has no subscription {subscription_uid!r}")
        sub = Subscription(self._session, subscription_uid, None, found.deployment_id)
        self._added[subscription_uid] = sub
        return sub

    def get_uids(self) -> list[str]:
        """Every subscription id of the datamart, and those this client added that wait for their first records."""
        schema = self._session.schema

        async def read(conn: asyncpg.Connection) -> list[str]:
            return [s.subscription_id for s in await list_subscriptions(conn, schema)]

        return sorted({*self._session.database(read), *self._added})

    def get_details(self, subscription_uid: str | None = None) -> Any:
        """One subscription's details (:meth:`Subscription.get_details`), or a list of every one's."""
        if subscription_uid is not None:
            return self.get(subscription_uid).get_details()
        return [self.get(uid).get_details() for uid in self.get_uids()]


class DataSets:
    """The newer client's ``client.data_sets`` for payload records: a data set is named by its subscription id."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self._subscriptions = subscriptions

    def store_records(
        self, data_set_id: str, request_body: Sequence[PayloadRecord | Mapping[str, Any]], background_mode: bool = True
    ) -> list[str]:
        """Store payload records (``PayloadRecord`` objects or dicts of their fields) in the subscription
        ``data_set_id``; returns their scoring ids. ``background_mode`` is accepted: storing never waits here."""
        return self._subscriptions.get(data_set_id).payload_logging.store(records=list(request_body))

    def get_records_count(self, data_set_id: str) -> int:
        """How many payload rows the subscription ``data_set_id`` holds (``payload_logging.get_records_count()``)."""
        return self._subscriptions.get(data_set_id).payload_logging.get_records_count()
