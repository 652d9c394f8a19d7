"""The OpenScale-style client without services: its credentials read into settings (both PostgreSQL forms, None,
and malformed ones refused clearly without a secret in the message), ``PayloadRecord``'s positional order and
``to_json``, the declaration an asset makes, and feedback data (CSV text typed as the subscription's columns)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream_logger import PayloadRecord
from stream_logger.background_worker import BackgroundWorker
from stream_logger.config import DEFAULT_DSN, Settings
from stream_logger.errors import (
    CredentialsError,
    FatalError,
    LifecycleError,
    RecordError,
    StreamLoggerError,
    SubscriptionError,
)
from stream_logger.kafka_config import KafkaClientConfig
from stream_logger.lifecycle import State
from stream_logger.openscale import PAYLOAD_RECORD_KEYS
from stream_logger.openscale_client import APIClient, CustomMachineLearningAsset, ProblemType
from stream_logger.openscale_credentials import (
    DEFAULT_SCHEMA,
    DEFAULT_TOPIC,
    client_settings,
    dsn_from_db_credentials,
)
from stream_logger.openscale_feedback import feedback_table, typed_value
from stream_logger.openscale_session import in_process_group
from stream_logger.openscale_subscription import declared_fields, payload_records
from stream_logger.worker_config import WorkerConfig

SECRET = "s3cr3t-Pw"
ENV = {"STREAM_LOGGER_BOOTSTRAP_SERVERS": "kafka-env:9092", "STREAM_LOGGER_DSN": "postgresql://env@db-env/mart"}

# ------------------------------------------------------------------------------------------------- credentials


def test_none_means_the_usual_settings_the_default_topic_and_schema() -> None:
    client = client_settings(None, {})
    assert client.settings.bootstrap_servers == "127.0.0.1:9092"
    assert client.settings.dsn == DEFAULT_DSN
    assert (client.topic, client.schema, client.in_process_worker) == (DEFAULT_TOPIC, DEFAULT_SCHEMA, False)
    assert (DEFAULT_TOPIC, DEFAULT_SCHEMA) == ("scoring", "datamart")


def test_missing_keys_come_from_the_environment_and_given_ones_win() -> None:
    from_env = client_settings({"topic": "credit"}, ENV)
    assert (from_env.settings.bootstrap_servers, from_env.settings.dsn) == ("kafka-env:9092", ENV["STREAM_LOGGER_DSN"])
    given = client_settings(
        {"bootstrap_servers": ["k1:9092", "k2:9093"], "dsn": "postgresql://u@db/m", "schema": "mart"}, ENV
    )
    assert (given.settings.bootstrap_servers, given.settings.dsn, given.schema) == (
        "k1:9092,k2:9093",
        "postgresql://u@db/m",
        "mart",
    )


def test_the_kafka_settings_as_a_dict_a_file_a_config_or_keywords(tmp_path: Path) -> None:
    sasl = {"security.protocol": "sasl_ssl", "sasl.mechanisms": "scram-sha-512", "sasl.username": "scoring"}
    as_dict = client_settings({"kafka_config": {**sasl, "sasl.password": SECRET, "bootstrap.servers": "k:9096"}}, ENV)
    assert as_dict.settings.bootstrap_servers == "k:9096"  # the credentials' Kafka settings beat the environment
    assert as_dict.settings.librdkafka_config()["sasl.password"] == SECRET
    assert as_dict.settings.kafka.get("sasl.mechanism") == "SCRAM-SHA-512"
    assert SECRET not in repr(as_dict)

    properties = tmp_path / "client.properties"
    properties.write_text("security.protocol=SASL_SSL\nsasl.username=scoring\nsasl.password=" + SECRET + "\n")
    as_file = client_settings({"kafka_config": str(properties)}, {})
    assert as_file.settings.kafka.get("sasl.password") == SECRET

    config = KafkaClientConfig.from_properties({"security.protocol": "SSL"}, "test")
    assert client_settings({"kafka_config": config}, {}).settings.kafka.get("security.protocol") == "SSL"

    keywords = client_settings(
        {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": SECRET, "topic": "t"}, {}
    )
    assert keywords.settings.aiokafka_kwargs()["sasl_plain_password"] == SECRET


@pytest.mark.parametrize(
    ("db_credentials", "dsn"),
    [
        (None, DEFAULT_DSN),
        ({"db_type": "postgresql", "uri": "postgres://admin:pw@db.example.com:31324/ibmclouddb"}, None),
        ("postgresql://admin@db:5432/mart", None),
        (
            {
                "db_type": "postgresql",
                "hostname": "db.example.com",
                "port": 31324,
                "username": "admin",
                "password": "pw",
                "db": "ibmclouddb",
            },
            "postgresql://admin:pw@db.example.com:31324/ibmclouddb",
        ),
        (
            {"hostname": "db", "port": "5432", "username": "a@b", "password": "p/w:x?#", "dbname": "my db"},
            "postgresql://a%40b:p%2Fw%3Ax%3F%23@db:5432/my%20db",
        ),
        ({"db_type": "POSTGRES", "hostname": "::1", "username": "u"}, "postgresql://u@[::1]"),
        ({"hostname": "db", "db": "m", "dbname": "m"}, "postgresql://db/m"),
    ],
    ids=["none", "uri", "dsn", "parts", "encoded", "ipv6", "db-and-dbname"],
)
def test_both_postgresql_credential_forms(db_credentials: Any, dsn: str | None) -> None:
    expected = dsn or (db_credentials["uri"] if isinstance(db_credentials, dict) else db_credentials)
    got = dsn_from_db_credentials(db_credentials, DEFAULT_DSN)
    assert got == expected
    Settings(dsn=got)  # well formed
    assert client_settings({"dsn": db_credentials}, {}).settings.dsn == expected


BAD_CREDENTIALS: list[tuple[str, Any, str]] = [
    ("a string", "postgresql://u:" + SECRET + "@db/m", "must be a dict"),
    ("unknown key", {"apikey": SECRET, "url": "https://x"}, "'apikey', 'url'"),
    ("servers", {"bootstrap_servers": 9092}, "bootstrap_servers"),
    ("bad server", {"bootstrap_servers": "kafka"}, "host:port"),
    ("topic", {"topic": "a topic"}, "credentials['topic']"),
    ("schema", {"schema": "Data-Mart"}, "credentials['schema']"),
    ("worker", {"in_process_worker": "yes"}, "in_process_worker"),
    ("sasl without password", {"security_protocol": "SASL_SSL", "sasl_username": "u"}, "sasl.password"),
    ("password not a string", {"sasl_password": 12}, "sasl_password"),
    ("kafka config", {"kafka_config": 5}, "kafka_config"),
    ("kafka setting", {"kafka_config": {"security.protocol": "SSL", "acks": "1"}}, "acks cannot be set"),
    ("dsn scheme", {"dsn": "mysql://u:" + SECRET + "@db/m"}, "postgresql://"),
    ("dsn password with a slash", {"dsn": {"uri": "postgres://u:" + SECRET + "/x@db/m"}}, "percent-encode"),
    ("dsn not a string", {"dsn": 5}, "credentials['dsn']"),
    ("db_type", {"dsn": {"db_type": "db2", "uri": "db2://x"}}, "'db2'"),
    ("uri and parts", {"dsn": {"uri": "postgres://db/m", "hostname": "db", "password": SECRET}}, "not both"),
    ("no host", {"dsn": {"username": "u", "password": SECRET}}, "'hostname'"),
    ("port", {"dsn": {"hostname": "db", "port": "54x", "password": SECRET, "username": "u"}}, "'port'"),
    ("port range", {"dsn": {"hostname": "db", "port": 70000}}, "1 to 65535"),
    ("password alone", {"dsn": {"hostname": "db", "password": SECRET}}, "no 'username'"),
    ("password not a string", {"dsn": {"hostname": "db", "username": "u", "password": 1234}}, "'password'"),
    ("two databases", {"dsn": {"hostname": "db", "db": "a", "dbname": "b"}}, "different databases"),
    ("db key", {"dsn": {"hostname": "db", "passwd": SECRET}}, "'passwd'"),
]


@pytest.mark.parametrize(("what", "credentials", "words"), BAD_CREDENTIALS, ids=[c[0] for c in BAD_CREDENTIALS])
def test_bad_credentials_are_refused_clearly_without_the_secret(what: str, credentials: Any, words: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        APIClient(credentials)
    message = str(caught.value)
    assert words in message
    assert SECRET not in message and SECRET not in repr(caught.value)
    error = caught.value  # one error, not a chain of them
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_bad_db_credentials_of_setup_are_refused_before_connecting() -> None:
    with APIClient({"dsn": "postgresql://nobody@127.0.0.1:1/none"}) as client:
        with pytest.raises(CredentialsError, match=r"db_credentials\['port'\]"):
            client.data_mart.setup(db_credentials={"hostname": "db", "port": "x", "password": SECRET, "username": "u"})
        with pytest.raises(CredentialsError, match="not both"):
            client.data_mart.setup(db_credentials={"uri": "postgres://db/m"}, internal_db=True)


def test_a_client_connects_to_nothing_until_used_and_cannot_be_used_once_closed() -> None:
    client = APIClient({"bootstrap_servers": "127.0.0.1:1", "dsn": "postgresql://nobody@127.0.0.1:1/none"})
    assert client.topic == "scoring"
    assert "127.0.0.1:1" in repr(client)
    client.close()
    client.close()
    with pytest.raises(StreamLoggerError, match="closed"):
        client.data_mart.subscriptions.get("x").payload_logging.store([PayloadRecord({}, {})])


# ------------------------------------------------------------------------------------------------ PayloadRecord

REQUEST = {"fields": ["Age", "Sex"], "values": [[33, "female"], [41, "male"]]}
RESPONSE = {"fields": ["prediction", "probability"], "values": [["Risk", [0.3, 0.7]], ["No Risk", [0.8, 0.2]]]}


def test_payload_record_takes_the_newer_clients_positional_order() -> None:
    when = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
    record = PayloadRecord(REQUEST, RESPONSE, "s-1", when, 12.5, "rev-2", True, "analyst")
    assert PAYLOAD_RECORD_KEYS == (
        "request",
        "response",
        "scoring_id",
        "scoring_timestamp",
        "response_time",
        "asset_revision",
        "multiple_records",
        "user_id",
    )
    assert [getattr(record, k) for k in PAYLOAD_RECORD_KEYS] == [
        REQUEST,
        RESPONSE,
        "s-1",
        when,
        12.5,
        "rev-2",
        True,
        "analyst",
    ]
    older = PayloadRecord(REQUEST, RESPONSE, "s-2", when, 3)  # the older client's five
    assert (older.response_time, older.asset_revision, older.multiple_records, older.user_id) == (3, None, False, None)
    assert PayloadRecord(REQUEST, RESPONSE, user_id="u").user_id == "u"


def test_to_json_is_a_json_ready_dict_of_the_same_fields_that_from_json_reads_back() -> None:
    when = datetime(2025, 1, 15, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    record = PayloadRecord(REQUEST, RESPONSE, "s-1", when, 12.5, "rev", True, "u")
    body = record.to_json()
    assert list(body) == list(PAYLOAD_RECORD_KEYS)
    assert body["scoring_timestamp"] == "2025-01-15T09:30:00+02:00"
    assert json.loads(json.dumps(body)) == body
    again = PayloadRecord.from_json(body)
    assert again.to_json() == body
    assert datetime.fromisoformat(str(again.scoring_timestamp)) == when

    arrays = PayloadRecord(
        {"fields": ["Age", "Amount"], "values": np.array([[33, 1200], [41, 800]])},
        pd.DataFrame({"prediction": ["Risk", "No Risk"], "probability": [[0.3, 0.7], [0.8, 0.2]]}),
        response_time=np.float64(4.5),
    ).to_json()
    assert arrays["request"] == {"fields": ["Age", "Amount"], "values": [[33, 1200], [41, 800]]}
    assert arrays["response"] == {"fields": ["prediction", "probability"], "values": RESPONSE["values"]}
    assert json.loads(json.dumps(arrays)) == arrays
    wml = {"input_data": [{"fields": ["Age"], "values": [[33]]}]}
    assert PayloadRecord(wml, RESPONSE).to_json()["request"] == wml  # a body's own shape is kept


def test_from_json_names_what_is_wrong() -> None:
    with pytest.raises(RecordError, match=r"unknown key\(s\) 'response_time_ms'") as caught:
        PayloadRecord.from_json({"request": REQUEST, "response": RESPONSE, "response_time_ms": 3}, "records[2]")
    assert caught.value.path == "records[2]"
    with pytest.raises(RecordError, match="required") as missing:
        payload_records([{"request": REQUEST}])
    assert missing.value.path == "records[0].response"
    with pytest.raises(RecordError, match="not str"):
        payload_records(["a record"])
    records = payload_records({"request": REQUEST, "response": RESPONSE, "scoring_id": "one"})
    assert [r.scoring_id for r in records] == ["one"]


# ------------------------------------------------------------------------------------------ what an asset declares


def test_an_asset_declares_the_types_it_tells() -> None:
    asset = CustomMachineLearningAsset(
        "credit",
        problem_type=ProblemType.BINARY_CLASSIFICATION,
        feature_columns=["Age", "Sex"],
        categorical_columns=["Sex", "Job"],
        prediction_column="predictedLabel",
        probability_column="probability",
        label_column="Risk",
    )
    assert asset.features == ["Age", "Sex", "Job"]
    assert declared_fields(asset) == [
        {"name": "Sex", "type": "text", "role": "feature"},
        {"name": "Job", "type": "text", "role": "feature"},
        {"name": "probability", "type": "float_array", "role": "probability"},
    ]
    regression = CustomMachineLearningAsset("price", problem_type=ProblemType.REGRESSION, prediction_column="price")
    assert declared_fields(regression) == [{"name": "price", "type": "float", "role": "prediction"}]
    with pytest.raises(SubscriptionError, match="problem_type"):
        CustomMachineLearningAsset("x", problem_type="clustering")
    with pytest.raises(SubscriptionError, match="feature_columns"):
        CustomMachineLearningAsset("x", feature_columns="Age")


# ------------------------------------------------------------------------------------------------ feedback data

FEEDBACK_TYPES = {"Age": "bigint", "Amount": "float8", "Sex": "text", "Owner": "boolean", "probability": "float8[]"}


def test_csv_feedback_is_typed_as_the_subscriptions_columns() -> None:
    text = 'Age,Amount,Sex,Owner,probability,Risk,Note\n33,1200,1,yes,"[0.3, 0.7]",Risk,12.5\n41,,f,0,,No Risk,x\n\n'
    table = feedback_table(text, None, data_header=True, types=FEEDBACK_TYPES)
    assert table.fields == ["Age", "Amount", "Sex", "Owner", "probability", "Risk", "Note"]
    assert table.values == [
        [33, 1200.0, "1", True, [0.3, 0.7], "Risk", 12.5],  # "1" stays text in a text column; Note: by its look
        [41, None, "f", False, None, "No Risk", "x"],
    ]
    assert type(table.values[0][1]) is float
    semicolons = feedback_table("33;Risk\n41;No Risk", ["Age", "Risk"], data_delimiter=";", types=FEEDBACK_TYPES)
    assert semicolons.values == [[33, "Risk"], [41, "No Risk"]]
    rows = feedback_table([["Age", "Risk"], [33, "Risk"]], None, data_header=True)  # lists are taken as they are
    assert (rows.fields, rows.values) == (["Age", "Risk"], [[33, "Risk"]])
    assert typed_value("33.0", "bigint", "x") == 33 and typed_value("7", None, "x") == 7
    assert typed_value('{"a": 1}', "jsonb", "x") == {"a": 1} and typed_value("plain", "jsonb", "x") == "plain"


@pytest.mark.parametrize(
    ("data", "fields", "header", "words"),
    [
        ("Age,Risk\n33", None, True, "line 2: 1 values for 2 fields"),
        ("Age,Risk\nold,Risk", None, True, "line 2, field 'Age': 'old' is not a bigint"),
        ("Age,Risk\n33.5,Risk", None, True, "not a bigint"),
        ("33,Risk", None, False, "fields=[...]"),
        ("Age,Risk\n33,Risk", ["Age", "Risk"], True, "not both"),
        ("", None, True, "no header line"),
        ([{"Age": 33}], ["Age"], False, "rows as lists"),
        ("Owner,Risk\nmaybe,Risk", None, True, "not a boolean"),
        ('probability,Risk\n"[1,""a""]",Risk', None, True, "not a float8[]"),
    ],
)
def test_malformed_feedback_data_says_where(data: Any, fields: Any, header: bool, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        feedback_table(data, fields, data_header=header, types=FEEDBACK_TYPES)
    assert words in str(caught.value)


# ------------------------------------------------------------------------------------- the in-process worker


def test_the_in_process_worker_follows_the_one_lifecycle() -> None:
    cfg = WorkerConfig(topics=("scoring",), group_id=in_process_group("mart"), schema="mart")
    assert cfg.group_id == "stream-logger-client-mart"
    worker = BackgroundWorker(cfg, Settings())
    with pytest.raises(FatalError, match="not running"):
        worker.wait_until_written(timeout_s=0.1)
    worker.stop()
    worker.stop()
    assert worker.state is State.STOPPED
    with pytest.raises(LifecycleError):
        worker.start()
