"""The example model service, driven over HTTP (httpx, in-process), logs every call to the real broker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from stream_logger.config import Settings
from stream_logger.records import decode
from stream_logger.samples import GERMAN_CREDIT_FEATURES, german_credit_record
from tests.support import consume_all

pytestmark = pytest.mark.integration

APP_FILE = Path(__file__).parents[2] / "examples" / "fastapi_service" / "app.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_service", APP_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_every_call_arrives_in_the_topic(settings: Settings, topic: str, tmp_path: Path) -> None:
    example = _load_example()
    app = example.create_app(topic, settings.bootstrap_servers, spool_dir=str(tmp_path))
    bodies = [german_credit_record(i, rows=1 + i % 3)["request"] for i in range(30)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            answers = [(await client.post("/score", json=body)).json() for body in bodies]
            # A row the model cannot score (a valid record all the same): logged as a failed call.
            bad = await client.post("/score", json={"fields": ["LoanDuration"], "values": [["long"]]})
        assert await app.state.emitter.flush(30)
    assert bad.status_code == 422
    got = {k.decode(): decode(v) for k, v in await consume_all(settings, topic, 31)}
    assert len(got) == 31
    for body, answer in zip(bodies, answers, strict=True):
        record = got[answer["scoring_id"]]
        assert record.request.fields == list(GERMAN_CREDIT_FEATURES) == body["fields"]
        assert record.request.values == body["values"]
        assert record.response is not None and record.response.values == answer["values"]
        assert record.status_code == 200 and record.response_time_ms is not None
    failed = [r for r in got.values() if r.status_code == 422]
    assert len(failed) == 1 and failed[0].response is None
