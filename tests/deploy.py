"""What the deployment tests share: the repository's deployment files, the tools that check them, and the worker's
own view of its command line, settings and metrics to check them against.

No Docker engine and no Kubernetes cluster run on the project's machines: the Dockerfile, the compose file and the
manifests are checked by parsing them against what the code accepts, and by the tools that need neither
(``docker-compose config``, ``promtool``), from Debian's packages (``.ci/system-deps`` installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from unittest import mock

import pytest
import yaml

from stream_logger.cli import build_parser
from stream_logger.config import Settings
from stream_logger.metrics import MonitorMetrics, WorkerMetrics
from tests.readme_snippets import ROOT

__all__ = [
    "DOCKERFILE",
    "KUBERNETES",
    "PROMETHEUS",
    "Instruction",
    "consume_env_vars",
    "exposed_metrics",
    "load_yaml",
    "metrics_in",
    "parse_command",
    "parse_dockerfile",
    "system_tool",
]

DOCKERFILE: Final = ROOT / "Dockerfile"
KUBERNETES: Final = ROOT / "examples/kubernetes"
PROMETHEUS: Final = ROOT / "examples/prometheus"


def system_tool(name: str, package: str) -> str:
    """The path of a program from a Debian package; a test without it fails under CI (``CI=true``), else skips."""
    path = shutil.which(name)
    if path is not None:
        return path
    why = f"{name} is missing: install Debian's {package} package (.ci/system-deps does)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


class _RecordingEnviron(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def consume_env_vars() -> set[str]:
    """The ``STREAM_LOGGER_*`` variables a ``stream-logger consume`` worker reads: looked up while its parser is
    built and its settings are read, so a setting spelled from a prefix counts as well as a literal one."""
    environ = _RecordingEnviron()
    with mock.patch.object(os, "environ", environ):
        build_parser().parse_args(["consume", "--topic", "t", "--schema", "s"])
        Settings.from_env()
    return {name for name in environ.read if name.startswith("STREAM_LOGGER_")}


def parse_command(argv: list[str]) -> argparse.Namespace:
    """``argv`` (without the program name) as the real ``stream-logger`` parser reads it; an error if it refuses."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports the error on stderr and exits 2
        raise AssertionError(f"not a valid stream-logger invocation: {argv}") from exc


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and its arguments as written."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (``CMD ["a", "b"]``)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            out.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return out


def load_yaml(path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML file."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def exposed_metrics() -> set[str]:
    """The series names a worker's ``/metrics`` exposes, and a monitor run's (``_total`` for counters, ``_bucket``,
    ``_sum`` and ``_count`` for histograms), from their own registries."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families = [*WorkerMetrics().registry.collect(), *MonitorMetrics().registry.collect()]
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers followed by a selector, a range or the end, not
    functions, label names or keywords."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", without_grouping))
    keywords = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    return {n for n in names if n not in keywords and not re.fullmatch(r"\d+[smhdwy]?", n) and n != "le"}
