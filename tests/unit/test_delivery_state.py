"""The delivery's state (where a record goes, what is known of the broker) through its life, with no broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_logger import Emitter
from stream_logger.delivery import Broker, Delivery, Intake
from stream_logger.errors import LifecycleError


def _intake(delivery: Delivery) -> Intake:
    """Where records go now, read afresh (mypy would keep what an earlier assert narrowed it to)."""
    return delivery.state.intake


def _broker(delivery: Delivery) -> Broker:
    return delivery.state.broker


def _delivery(spool_dir: Path) -> Delivery:
    return Delivery(Emitter("t", "127.0.0.1:1", spool_dir=spool_dir, close_timeout_s=0.5).delivery_config)


def test_records_are_held_then_produced_then_spilled_while_the_broker_is_unreachable_then_kept_at_stop(
    tmp_path: Path,
) -> None:
    delivery = _delivery(tmp_path)
    assert _intake(delivery) is Intake.HOLD and _broker(delivery) is Broker.UP
    delivery.submit(b"held", b"value")
    assert delivery.stats().queued == 1
    delivery.start()
    assert _intake(delivery) is Intake.PRODUCER
    deadline = time.monotonic() + 20
    while _broker(delivery) is not Broker.UNREACHABLE and time.monotonic() < deadline:
        time.sleep(0.05)  # librdkafka reports the broker down, and the delivery's probe fails
    assert _broker(delivery) is Broker.UNREACHABLE
    delivery.submit(b"later", b"value")  # suspended: straight to the spool
    assert delivery.stats().spilled >= 1 and delivery.state.spool_has_records
    delivery.stop()
    delivery.stop()
    assert _intake(delivery) is Intake.CLOSED and not delivery.running
    assert delivery.stats().spool_records == 2  # both kept for the next emitter on this spool
    delivery.submit(b"too late", b"value")
    assert delivery.stats().dropped == 1
    with pytest.raises(LifecycleError, match="delivery cannot be started again"):
        delivery.start()


def test_a_refused_delivery_drops_every_record_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    delivery = _delivery(tmp_path)
    delivery.submit(b"held", b"value")
    delivery.refuse("it could not start in this process")
    delivery.submit(b"next", b"value")
    assert _intake(delivery) is Intake.DROP_ALL
    assert delivery.stats().dropped == 2 and delivery.stats().queued == 0
    assert "it could not start in this process" in caplog.text
