"""The porting example keeps its promise: ``examples/openscale_port/ported.py`` (run on the real stack by
``tests/integration/test_openscale_port.py``) differs from ``original.py``, the script as written for IBM Watson
OpenScale, only in its import lines and its credentials."""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "openscale_port"
CREDENTIAL_NAMES = {"CREDENTIALS", "DB_CREDENTIALS", "DB_SCHEMA"}
"""The module-level names a script keeps its credentials in: the client's, the database's, and its schema."""


def _lines(path: Path, kinds: set[str]) -> set[int]:
    """The line numbers of the script's import statements (``"imports"``) or credential assignments."""
    found: set[int] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        is_import = isinstance(node, ast.Import | ast.ImportFrom)
        is_credential = (
            isinstance(node, ast.Assign) and {t.id for t in node.targets if isinstance(t, ast.Name)} <= CREDENTIAL_NAMES
        )
        if ("imports" in kinds and is_import) or ("credentials" in kinds and is_credential):
            assert node.end_lineno is not None
            found.update(range(node.lineno, node.end_lineno + 1))
    return found


def _changed_lines(a: list[str], b: list[str]) -> tuple[set[int], set[int]]:
    """The (1-based) numbers of the lines of ``a`` and of ``b`` that the other lacks, blank ones aside."""
    only_a: set[int] = set()
    only_b: set[int] = set()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            only_a.update(i + 1 for i in range(i1, i2) if a[i].strip())
            only_b.update(j + 1 for j in range(j1, j2) if b[j].strip())
    return only_a, only_b


def test_the_ported_script_differs_from_the_original_only_in_imports_and_credentials() -> None:
    original, ported = EXAMPLE / "original.py", EXAMPLE / "ported.py"
    only_original, only_ported = _changed_lines(
        original.read_text(encoding="utf-8").splitlines(), ported.read_text(encoding="utf-8").splitlines()
    )
    allowed = {"imports", "credentials"}
    assert only_original <= _lines(original, allowed), sorted(only_original - _lines(original, allowed))
    assert only_ported <= _lines(ported, allowed), sorted(only_ported - _lines(ported, allowed))
    # Both kinds do change: the original imports IBM's packages and names an OpenScale service.
    assert only_original & _lines(original, {"imports"}) and only_original & _lines(original, {"credentials"})
    assert "ibm_ai_openscale" in original.read_text(encoding="utf-8")
    assert "ibm_ai_openscale" not in ported.read_text(encoding="utf-8")
