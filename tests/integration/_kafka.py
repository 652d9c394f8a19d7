"""``consume_all`` for ``tests/integration/test_emitter.py``, which imports it from here; it is defined in
``tests/support.py``, where every other test takes it from."""

from __future__ import annotations

from tests.support import consume_all

__all__ = ["consume_all"]
