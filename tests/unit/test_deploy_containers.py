"""The worker image and the compose file, checked without a Docker engine: the Dockerfile's instructions against
what the worker accepts, the compose file by Debian's ``docker-compose config`` (which needs no engine)."""

from __future__ import annotations

import fnmatch
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy import DOCKERFILE, Instruction, consume_env_vars, parse_command, parse_dockerfile, system_tool
from tests.readme_snippets import ROOT

INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
FINAL_STAGE = INSTRUCTIONS[max(i for i, ins in enumerate(INSTRUCTIONS) if ins.keyword == "FROM") :]


def only(keyword: str, stage: list[Instruction] = FINAL_STAGE) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def uid_of(user: str) -> int:
    name = user.split(":")[0]
    assert name.isdigit(), f"USER {user}: a numeric UID, so Kubernetes' runAsNonRoot can check it"
    return int(name)


# ------------------------------------------------------------------------------------------------- Dockerfile


def test_every_stage_is_the_slim_python_the_package_supports() -> None:
    bases = [ins.arguments.split()[0] for ins in INSTRUCTIONS if ins.keyword == "FROM"]
    assert bases and set(bases) == {"python:3.11-slim"}, bases


def test_the_image_runs_stream_logger_consume_as_a_non_root_user() -> None:
    keywords = [ins.keyword for ins in FINAL_STAGE]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert uid_of(only("USER").arguments) >= 1000
    assert only("ENTRYPOINT").exec_form() == ["stream-logger"]
    args = parse_command(only("CMD").exec_form())
    assert args.command == "consume" and args.topic == ["scoring"] and args.schema == "datamart"


def test_the_exposed_port_is_the_one_the_worker_serves_and_the_healthcheck_probes() -> None:
    port = parse_command(only("CMD").exec_form()).metrics_port
    assert only("EXPOSE").arguments == str(port)
    healthcheck = only("HEALTHCHECK").arguments
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck


def test_the_build_copies_only_files_that_exist_and_the_build_context_keeps() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [ins for ins in INSTRUCTIONS if ins.keyword == "COPY" and "--from" not in ins.arguments]
    assert copies
    for ins in copies:
        *sources, _ = ins.arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is in .dockerignore"
    # What the wheel needs: the project, its readme (pyproject's `readme`), the package.
    assert {s for ins in copies for s in ins.arguments.split()[:-1]} == {"pyproject.toml", "README.md", "stream_logger"}
    assert {".git", ".venv", "tests"} <= set(ignored)


# ----------------------------------------------------------------------------------------------- compose file


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Debian's docker-compose (the Python v1 tool, no engine needed) resolves it."""
    tool = system_tool("docker-compose", "docker-compose")
    run = subprocess.run(
        [tool, "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, f"docker-compose config refused docker-compose.yml:\n{run.stderr}"
    config: dict[str, Any] = yaml.safe_load(run.stdout)
    return config


def test_the_compose_file_validates_and_has_the_worker(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "postgres", "datamart-setup", "worker"}
    assert "name" not in yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_worker_service_reaches_the_compose_kafka_and_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["worker"]
    assert set(worker["environment"]) <= consume_env_vars()
    host, port = worker["environment"]["STREAM_LOGGER_BOOTSTRAP_SERVERS"].split(":")
    assert host == "kafka"
    assert f"//kafka:{port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    pg = services["postgres"]["environment"]
    user, password, database = pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
    dsn = f"postgresql://{user}:{password}@postgres:5432/{database}"
    assert worker["environment"]["STREAM_LOGGER_DSN"] == dsn
    assert services["datamart-setup"]["environment"] == worker["environment"]
    assert worker["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
        "datamart-setup": {"condition": "service_completed_successfully"},
    }


def test_the_worker_service_runs_the_image_creates_its_datamart_and_stops_in_time(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker, setup = services["worker"], services["datamart-setup"]
    assert worker["build"]["context"] == str(ROOT) and worker["image"] == setup["image"]
    args = parse_command(worker["command"])
    assert args.command == "consume"
    setup_args = parse_command(setup["command"])
    assert (setup_args.command, setup_args.datamart_command) == ("datamart", "setup")
    assert setup_args.schema == args.schema
    port = args.metrics_port
    assert f"127.0.0.1:{port}:{port}/tcp" in worker["ports"]
    assert any(f"http://127.0.0.1:{port}/healthz" in part for part in worker["healthcheck"]["test"])
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > args.shutdown_grace_s
