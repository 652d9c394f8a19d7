"""README.md cannot rot: every snippet is marked, and each one is checked here without services.

Python snippets compile; every shell command is a valid invocation of the real ``stream-logger`` argument parser
(or ``make -n TARGET``); JSON snippets parse and validate against the record contract or the subscription format;
SQL snippets name only tables a datamart has. The reference sections name every environment variable the code
reads, every worker metric and every dead-letter code. ``tests/integration/test_readme_snippets.py`` runs them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import orjson
import pytest

from stream_logger import contract, kafka_config, records
from stream_logger.cli import build_parser
from tests.deploy import consume_env_vars, system_tool
from tests.readme_snippets import (
    LANGUAGES,
    README,
    ROOT,
    RUN_BY_INTEGRATION_TEST,
    Snippet,
    command_lines,
    parse_readme,
)

SNIPPETS = parse_readme()
BY_NAME = {s.name: s for s in SNIPPETS if s.name}
TEXT = README.read_text(encoding="utf-8")

# Shell snippets that need no services, run by this file (the tools come from Debian's packages).
RUN_BY_UNIT_TEST = {"compose-check": "docker-compose", "alerts-check": "prometheus"}
# Shell snippets only parsed, with the reason they are not run.
PARSE_ONLY = {
    "the-two-commands": "make demo/test set up the machine and run for minutes: checked with make -n",
    "dev-stack": "would stop the shared services",
    "consume": "runs until stopped (consume-batch runs the same pipeline to the end)",
    "metrics": "needs a long-running worker",
    "other-ports": "would start a second dev stack",
    "datamart-drop": "drops a datamart (tests/integration/test_cli_datamart.py runs it on a schema of its own)",
    "deploy-servers": "servers run until stopped (tests/integration/test_servers.py runs uvicorn and gunicorn so)",
    "containers": "needs a Docker engine (tests/unit/test_deploy_containers.py checks the files it uses)",
    "kubernetes": "needs a Kubernetes cluster (tests/unit/test_deploy_kubernetes.py checks the manifests)",
    "kafka-confluent-cloud": "needs a Confluent Cloud cluster (test_secure_kafka.py runs SASL_SSL on the dev stack)",
    "kafka-msk-scram": "needs an MSK cluster (test_secure_kafka.py runs SCRAM-SHA-512 on the dev stack)",
    "kafka-config-file": "needs a managed cluster (test_secure_kafka.py runs --kafka-config on the dev stack)",
    "dev-secure": "would restart the shared dev stack",
}
# Programs a shell snippet may call besides stream-logger and make.
OTHER_PROGRAMS = frozenset(
    {"curl", "grep", "psql", "java", "export", "eval", "uvicorn", "gunicorn", "docker", "kubectl"}
)
DATAMART_TABLES = frozenset(
    {"subscriptions", "dead_letters", "consumer_offsets", "schema_migrations", "payload_german_credit"}
    | {"feedback_german_credit", "labelled_german_credit"}
)


def snippets_of(language: str) -> list[Snippet]:
    return [s for s in SNIPPETS if s.language == language]


def check_stream_logger(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports the error on stderr and exits 2
        raise AssertionError(f"not a valid stream-logger invocation: {argv}") from exc


def env_vars_in_code() -> set[str]:
    """The variables the code names in full, and those a worker looks up however it spells them (from a prefix)."""
    found: set[str] = set(consume_env_vars())
    for path in (ROOT / "stream_logger").rglob("*.py"):
        found.update(re.findall(r"STREAM_LOGGER_[A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    return found | {kafka_config.env_name(name) for name in kafka_config.SECURITY_SETTINGS}


# ------------------------------------------------------------------------------------------------ the markers


def test_every_fenced_block_has_a_unique_marker_and_a_known_language() -> None:
    assert SNIPPETS, "README.md has no snippets"
    unmarked = [s.line for s in SNIPPETS if s.name is None]
    assert not unmarked, f"README blocks without a '<!-- snippet: NAME -->' line before them, at lines {unmarked}"
    names = [s.name for s in SNIPPETS]
    assert len(names) == len(set(names)), f"duplicate snippet names: {names}"
    odd = [(s.name, s.language) for s in SNIPPETS if s.language not in LANGUAGES]
    assert not odd, f"fence languages must be one of {sorted(LANGUAGES)}: {odd}"


def test_a_block_without_a_marker_is_found() -> None:
    text = "intro\n\n<!-- snippet: ok -->\n```bash\nmake test\n```\n\n```python\nprint(1)\n```\n"
    found = parse_readme(text)
    assert [(s.name, s.language, s.line) for s in found] == [("ok", "bash", 4), (None, "python", 8)]


def test_every_runnable_snippet_is_run_by_the_integration_test_or_says_why_not() -> None:
    for s in SNIPPETS:
        if s.language in {"python", "sql"}:
            assert s.name in RUN_BY_INTEGRATION_TEST, f"{s.name}: {s.language} snippets must run in integration"
        if s.language == "bash":
            ways = [s.name in RUN_BY_INTEGRATION_TEST, s.name in RUN_BY_UNIT_TEST, s.name in PARSE_ONLY]
            assert ways.count(True) == 1, s.name
    for names in (RUN_BY_INTEGRATION_TEST, RUN_BY_UNIT_TEST, PARSE_ONLY):
        assert set(names) <= set(BY_NAME), set(names) - set(BY_NAME)


def test_command_lines_split_comments_chains_and_redirections() -> None:
    code = 'a --x 1  # a comment\nb "two words" > out.txt && c \\\n  --y\n'
    assert command_lines(code) == [["a", "--x", "1"], ["b", "two words"], ["c", "--y"]]


# ------------------------------------------------------------------------------------------------- by language


@pytest.mark.parametrize("snippet", snippets_of("python"), ids=lambda s: s.name)
def test_python_snippets_compile(snippet: Snippet) -> None:
    compile(snippet.code, f"README.md:{snippet.line}", "exec")


@pytest.mark.parametrize("snippet", snippets_of("bash"), ids=lambda s: s.name)
def test_shell_snippets_are_valid_invocations(snippet: Snippet) -> None:
    commands = command_lines(snippet.code)
    assert commands, f"{snippet.name}: no command"
    for argv in commands:
        program = argv[0]
        if program in {"stream-logger", ".venv/bin/stream-logger"}:
            check_stream_logger(argv[1:])
        elif program == "make":
            assert len(argv) == 2, argv
            run = subprocess.run(["make", "-n", argv[1]], cwd=ROOT, capture_output=True, text=True, check=False)
            assert run.returncode == 0, f"make -n {argv[1]}: {run.stderr}"
        elif program == "eval":
            inner = re.fullmatch(r"\$\((.*)\)", argv[1])
            assert inner, argv
            check_stream_logger(inner[1].split()[1:])
        elif program == "export":
            name = argv[1].split("=", 1)[0]
            assert name in env_vars_in_code(), f"{name} is not a setting the code reads"
        elif program == "psql":
            assert '"$STREAM_LOGGER_DSN"' in snippet.code, "psql should connect with $STREAM_LOGGER_DSN"
        elif snippet.name not in RUN_BY_UNIT_TEST:  # those run their programs: test_the_tool_snippets_run
            assert program in OTHER_PROGRAMS, f"{snippet.name}: unexpected program {program!r}"
        for arg in argv:  # files named in a command are files (or folders) of the repository
            if arg.startswith("examples/"):
                assert (ROOT / arg).exists(), arg


@pytest.mark.parametrize("name", sorted(RUN_BY_UNIT_TEST))
def test_the_tool_snippets_run(name: str) -> None:
    """The snippets that check the deployment files run as written, from the repository's root."""
    for argv in command_lines(BY_NAME[name].code):
        tool = system_tool(argv[0], RUN_BY_UNIT_TEST[name])
        run = subprocess.run([tool, *argv[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"{name}: {' '.join(argv)}\n{run.stdout}\n{run.stderr}"


def test_the_json_record_example_is_a_valid_v1_record() -> None:
    record = records.from_obj(orjson.loads(BY_NAME["record-minimal"].code))
    assert record.subscription_id == "german_credit"
    assert record.row_count == 1
    # The schema file the README links to exists and is the v1 contract.
    assert orjson.loads((ROOT / "schemas/scoring_record.v1.json").read_bytes())["$id"].endswith(":v1")


def test_every_json_snippet_is_checked() -> None:
    assert [s.name for s in snippets_of("json")] == ["record-minimal"]


@pytest.mark.parametrize("snippet", snippets_of("sql"), ids=lambda s: s.name)
def test_sql_snippets_name_only_datamart_tables(snippet: Snippet) -> None:
    tables = set(re.findall(r"\bdatamart\.([a-z_0-9]+)", snippet.code))
    assert tables, f"{snippet.name}: no datamart table"
    assert tables <= DATAMART_TABLES, tables - DATAMART_TABLES


def test_the_architecture_diagram_names_the_real_tables_and_commands() -> None:
    diagram = BY_NAME["architecture"].code
    for name in (
        "Emitter",
        "stream-logger consume",
        "stream-logger replay",
        "payload_",
        "feedback_",
        "labelled_",
        *sorted(t for t in DATAMART_TABLES - {"schema_migrations"} if not t.endswith("_german_credit")),
    ):
        assert name in diagram, name
    migrations = "".join(p.read_text() for p in (ROOT / "schemas/datamart").glob("*.sql"))
    for table in ("subscriptions", "dead_letters", "consumer_offsets"):
        assert f"CREATE TABLE {table}" in migrations


def test_the_links_point_at_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", TEXT):
        assert (ROOT / target).exists(), target


# ------------------------------------------------------------------------------------ the reference sections


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table() -> None:
    for name in sorted(env_vars_in_code()):
        assert f"| `{name}` |" in TEXT, f"{name} is missing from the configuration reference"


def test_every_consume_and_replay_flag_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("consume", "replay"):
        for action in sub.choices[command]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in {"--help", "--bootstrap-servers", "--dsn"}:
                    assert f"`{flag}" in TEXT, f"{command} {flag} is not in the README"


def test_every_worker_metric_is_listed() -> None:
    source = (ROOT / "stream_logger/metrics.py").read_text(encoding="utf-8")
    names = re.findall(r'"(stream_logger_[a-z_]+)"', source)
    assert len(names) >= 10
    for name in names:
        assert f"| `{name}` |" in TEXT, f"metric {name} is missing from the README's table"


def test_every_dead_letter_code_is_explained() -> None:
    for code in sorted(contract.ERROR_CODES):
        assert f"| `{code}` |" in TEXT, f"dead-letter code {code} is missing from the README's table"


def test_the_readme_names_the_make_targets_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in re.findall(r"`make ([a-z-]+)`", TEXT):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert Path(ROOT / ".ci/run").read_text().rstrip().endswith("make test")


def test_the_code_map_names_every_module() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code_map = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    package = Path(__file__).resolve().parents[2] / "stream_logger"
    modules = {p.name for p in package.glob("*.py") if not p.name.startswith("_")}
    modules |= {f"{p.name}/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(name for name in modules if f"`{name}`" not in code_map)
    assert not missing, f"modules the README's code map does not name: {missing}"
