"""A small model service that scores German-credit applicants and logs every call with the emitter.

Run it:  pip install uvicorn && STREAM_LOGGER_TOPIC=scoring uvicorn app:app   (from this folder)
Score:   curl -s localhost:8000/score -d '{"fields": ["CheckingStatus", "LoanDuration", ...], "values": [[...]]}'

The emitter starts and stops with the application (its lifespan); ``log()`` returns at once, so logging adds
microseconds to a call, and a broker outage never fails a request (records wait in the spool).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stream_logger import Emitter

SUBSCRIPTION_ID = "german-credit"
DEPLOYMENT_ID = "german-credit-scorecard-v1"
_CHECKING = {"less_0": 1.0, "0_to_200": 0.4, "greater_200": -0.2, "no_checking": -0.9}


def risk_probability(row: dict[str, Any]) -> float:
    """A fixed scorecard: P(Risk) for one applicant. Longer loans and little checking money raise the risk."""
    score = -1.6 + 0.04 * float(row.get("LoanDuration", 12)) + 0.00005 * float(row.get("LoanAmount", 2000))
    score -= 0.015 * (float(row.get("Age", 35)) - 19)
    score += _CHECKING.get(str(row.get("CheckingStatus")), 0.0)
    score += 0.8 if row.get("CreditHistory") in ("prior_payments_delayed", "outstanding_credit") else 0.0
    return round(1 / (1 + math.exp(-score)), 4)


def score(fields: list[str], values: list[list[Any]]) -> dict[str, Any]:
    """The model's response: a prediction and the probabilities [No Risk, Risk] for each row."""
    out = []
    for row in values:
        risk = risk_probability(dict(zip(fields, row, strict=True)))
        out.append(["Risk" if risk >= 0.5 else "No Risk", [round(1 - risk, 4), risk]])
    return {"fields": ["prediction", "probability"], "values": out}


def create_app(topic: str, bootstrap_servers: str | None = None, spool_dir: str | None = None) -> Starlette:
    """The application; the emitter sends to ``topic``."""
    emitter = Emitter(topic, bootstrap_servers, spool_dir=spool_dir)

    async def score_endpoint(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await request.json()
        fields, values = body.get("fields"), body.get("values")
        if not isinstance(fields, list) or not isinstance(values, list):
            return JSONResponse({"error": 'expected {"fields": [...], "values": [[...]]}'}, status_code=400)
        try:
            response = score(fields, values)
        except (ValueError, TypeError) as exc:
            emitter.log(
                request=body,
                response=None,
                subscription_id=SUBSCRIPTION_ID,
                deployment_id=DEPLOYMENT_ID,
                status_code=422,
                error=type(exc).__name__,
            )
            return JSONResponse({"error": "cannot score these rows"}, status_code=422)
        scoring_id = emitter.log(
            request=body,
            response=response,
            subscription_id=SUBSCRIPTION_ID,
            deployment_id=DEPLOYMENT_ID,
            response_time_ms=(time.perf_counter() - started) * 1000,
            status_code=200,
            request_id=request.headers.get("x-request-id"),
        )
        return JSONResponse({**response, "scoring_id": scoring_id})

    async def stats_endpoint(request: Request) -> JSONResponse:
        stats = emitter.stats()
        # Each worker process has its own emitter: the pid says whose counts these are.
        return JSONResponse({"pid": os.getpid(), **{name: getattr(stats, name) for name in stats.__slots__}})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with emitter:
            yield

    app = Starlette(
        routes=[Route("/score", score_endpoint, methods=["POST"]), Route("/logging-stats", stats_endpoint)],
        lifespan=lifespan,
    )
    app.state.emitter = emitter
    return app


app = create_app(os.environ.get("STREAM_LOGGER_TOPIC", "scoring"))
