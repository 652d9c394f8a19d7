"""``python -m stream_logger`` runs the ``stream-logger`` command."""

from .cli import main

raise SystemExit(main())
