"""A WSGI model service for the server tests (gunicorn): one ``ThreadedEmitter``, created at import.

With ``gunicorn --preload`` the import, and so the emitter, happens in gunicorn's master before it forks the
workers; without it, in each worker. ``/score`` answers with the record's ``scoring_id`` and the worker's pid,
``/logging-stats`` with the worker's emitter stats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from stream_logger import ThreadedEmitter

emitter = ThreadedEmitter(os.environ["STREAM_LOGGER_TOPIC"])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO")
    if path == "/score":
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        response = {"fields": ["prediction"], "values": [["No Risk"] for _ in body["values"]]}
        answer: dict[str, Any] = {"scoring_id": emitter.log(request=body, response=response, subscription_id="gc")}
    elif path == "/logging-stats":
        stats = emitter.stats()
        answer = {name: getattr(stats, name) for name in stats.__slots__}
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"pid": os.getpid(), **answer}).encode()]
