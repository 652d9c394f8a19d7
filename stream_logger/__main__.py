"""``python -m stream_logger`` runs the ``stream-logger`` command."""

from .cli import main

__all__: list[str] = []

raise SystemExit(main())
