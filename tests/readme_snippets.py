"""The code snippets of README.md, for the tests that keep them working.

Every fenced block in the README must follow a marker line ``<!-- snippet: NAME -->``; the tests fail on a block
without one, so a new snippet cannot slip in untested. ``tests/unit/test_readme.py`` checks every snippet without
services (Python compiles, each shell command parses with the real argument parser, JSON validates, SQL names real
tables); ``tests/integration/test_readme_snippets.py`` runs the Python, SQL and most shell snippets against the real
Kafka and PostgreSQL, with the README's names (topic ``scoring``, schema ``datamart``) replaced by fresh ones.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "LANGUAGES",
    "README",
    "ROOT",
    "RUN_BY_INTEGRATION_TEST",
    "Snippet",
    "command_lines",
    "parse_readme",
    "substitute",
]

ROOT: Final = Path(__file__).resolve().parent.parent
README: Final = ROOT / "README.md"
LANGUAGES: Final = frozenset({"python", "bash", "json", "sql", "text"})

# Snippets tests/integration/test_readme_snippets.py runs for real (it checks that it ran each of them).
RUN_BY_INTEGRATION_TEST: Final = frozenset(
    {
        "emit-async",
        "emit-sync",
        "emit-openscale",
        "read-back",
        "openscale-port",
        "feedback-log",
        "feedback-read",
        "sql-quality",
        "monitor-run",
        "emit-file",
        "production-setup",
        "consume-batch",
        "replay",
        "redrive",
        "sql-recent",
        "sql-traffic",
        "sql-fairness",
        "sql-dead-letters",
        "sql-fields",
        "sql-offsets",
        "rewind-group",
    }
)

_MARKER = re.compile(r"^<!-- snippet: ([a-z0-9][a-z0-9-]*) -->$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True, slots=True)
class Snippet:
    """One fenced block of the README."""

    name: str | None  # None: no marker before the fence
    language: str
    code: str
    line: int  # the fence's line number (1-based)


def parse_readme(text: str | None = None) -> list[Snippet]:
    """Every fenced block of the README, in order, with the marker that precedes it (if any)."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"README line {start + 1}: a fenced block is never closed")
        marker = _MARKER.match(lines[start - 1].strip()) if start > 0 else None
        snippets.append(Snippet(marker[1] if marker else None, fence[1], "\n".join(body) + "\n", start + 1))
        i += 1
    return snippets


def command_lines(code: str) -> list[list[str]]:
    """The commands of a bash snippet as argument lists: comments dropped, continuation lines joined, ``a; b``
    and ``a && b`` split; a redirection (``> file``) and what follows it are left out."""
    joined = re.sub(r"\\\n", " ", code)
    commands: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        skip = False
        for token in lexer:
            if token in {";", "&&", "||", "|"}:
                if current:
                    commands.append(current)
                current, skip = [], False
            elif token in {">", ">>", "<", "2>", "&>"}:
                skip = True  # the redirection's target is not an argument
            elif not skip:
                current.append(token)
            else:
                skip = False
        if current:
            commands.append(current)
    return commands


def substitute(code: str, language: str, names: dict[str, str]) -> str:
    """The snippet with the README's example names replaced by the test's fresh ones.

    ``names`` maps ``topic``, ``schema``, ``replay_schema`` and ``group`` to the names to use. Only the places
    where the README uses them as such are rewritten (``--topic scoring``, ``Emitter("scoring")``,
    ``--schema datamart``, ``Datamart("datamart")``, ``schema="datamart"`` in Python, ``datamart.<table>`` in SQL,
    ``--group <name>``, ``group_id = '<name>'`` and ``topic = 'scoring'`` in SQL), never a command name.
    """
    out = code
    if language == "python":
        out = out.replace('"scoring"', f'"{names["topic"]}"')
        out = out.replace('Datamart("datamart")', f'Datamart("{names["schema"]}")')
        out = out.replace('schema="datamart"', f'schema="{names["schema"]}"')
    out = re.sub(r"--topic scoring\b", f"--topic {names['topic']}", out)
    out = re.sub(r"--schema datamart_replay\b", f"--schema {names['replay_schema']}", out)
    out = re.sub(r"--schema datamart\b", f"--schema {names['schema']}", out)
    out = re.sub(r"--group [a-z][a-z0-9_-]*", f"--group {names['group']}", out)
    out = re.sub(r"\bdatamart\.(?=[a-z_])", f"{names['schema']}.", out)
    out = re.sub(r"group_id = '[a-z][a-z0-9_-]*'", f"group_id = '{names['group']}'", out)
    out = re.sub(r"topic = 'scoring'", f"topic = '{names['topic']}'", out)
    return out
