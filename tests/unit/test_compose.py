"""compose/docker-compose.yml is a valid Compose project (checked by the Docker Compose CLI against
the Compose specification), its StreamPulse services run real entry points of the project, every
mounted file exists, and the pieces agree with each other (ports, topics, settings, rules)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import ENV_PREFIX, Settings
from tests.deployment import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    TEST_GRAFANA_PASSWORD,
    TEST_REDIS_PASSWORDS,
    VENV_BIN,
    compose_config,
    docker_compose,
    image_env,
)
from tests.monitoring import PROMETHEUS_CONFIG, rule_files

#: The README's entry points, by the Compose service that runs each.
ENTRY_POINTS = {
    "worker": ["faust", "-A", "app", "worker"],
    "api": ["uvicorn", "api.main:app"],
    "replay": ["python", "-m", "producers.replay"],
    "topic-init": ["python", "-m", "app.provision"],
}
HEALTH_CHECKED = {"kafka", "redis", "worker", "api", "prometheus", "alertmanager", "grafana"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    return {v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"}


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    for target, source in _bind_mounts(service).items():
        if container_path == target or container_path.startswith(target + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not inside a bind mount")


def test_the_compose_cli_validates_the_file_against_the_compose_spec() -> None:
    result = docker_compose(
        "--profile", "*", "config", "--quiet", env={"GRAFANA_ADMIN_PASSWORD": "x", **TEST_REDIS_PASSWORDS}
    )
    assert result.returncode == 0, result.stderr


def test_the_validation_rejects_what_the_spec_forbids(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  worker:\n    image: x\n    healthcheck:\n      intervall: 5s\n")
    exe = VENV_BIN / "docker-compose"
    result = subprocess.run(
        [str(exe), "-f", str(bad), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "intervall" in result.stderr


def test_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "kafka",
        "topic-init",
        "redis",
        "worker",
        "api",
        "replay",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services["replay"]["profiles"] == ["replay"]


def test_grafana_admin_password_has_no_committed_default(services: dict[str, dict[str, Any]]) -> None:
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == TEST_GRAFANA_PASSWORD
    result = docker_compose("config", "--quiet")
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
    assert TEST_GRAFANA_PASSWORD not in COMPOSE_FILE.read_text()


def test_env_example_documents_every_variable_the_compose_file_reads() -> None:
    raw = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", raw))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert interpolated - documented == set()
    result = docker_compose("--env-file", str(ENV_EXAMPLE), "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_kafka_is_the_official_image_in_kraft_mode_with_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_redis_appends_to_its_aof_and_is_health_checked(services: dict[str, dict[str, Any]]) -> None:
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in HEALTH_CHECKED:
        assert services[name].get("healthcheck", {}).get("test"), name


def test_depends_on_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (
                    f"{name} waits on {dependency}, which has none"
                )
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
                assert services[dependency].get("restart", "no") == "no"
    assert set(services["worker"]["depends_on"]) == {"kafka", "redis", "topic-init"}


def test_workers_scale_each_with_its_own_state_volume(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a fixed host port would stop `--scale worker=N`"
    anonymous = [v for v in worker["volumes"] if v["type"] == "volume" and not v.get("source")]
    assert [v["target"] for v in anonymous] == [image_env()["STREAMPULSE_DATA_DIR"]]


def test_project_services_run_the_readme_entry_points(services: dict[str, dict[str, Any]]) -> None:
    built = {
        name
        for name, s in services.items()
        if Path(s.get("build", {}).get("context", "/nonexistent")) == ROOT
    }
    assert built == set(ENTRY_POINTS)
    for name, entry in ENTRY_POINTS.items():
        assert services[name]["command"][: len(entry)] == entry, name
        assert services[name]["image"] == services["worker"]["image"]


def _assigns_module_level(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        for node in tree.body
    )


def test_faust_and_uvicorn_entry_points_are_real() -> None:
    assert (VENV_BIN / "faust").exists() and (VENV_BIN / "uvicorn").exists()
    # `faust -A app` imports the package `app` and takes its attribute `app` (app/__init__.py
    # resolves it lazily from app/main.py); `uvicorn api.main:app` takes `app` from api/main.py.
    package = ast.parse((ROOT / "app" / "__init__.py").read_text())
    assert any(
        isinstance(node, ast.ImportFrom)
        and node.module == "app.main"
        and any(a.name == "app" for a in node.names)
        for node in ast.walk(package)
    )
    assert _assigns_module_level(ROOT / "app" / "main.py", "app")
    assert _assigns_module_level(ROOT / "api" / "main.py", "app")


def test_replay_entry_point_is_real_and_takes_the_options_compose_passes(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["replay"]["command"]
    result = subprocess.run(
        [sys.executable, "-m", "producers.replay", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in (arg for arg in command[3:] if arg.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(option)}\b", result.stdout), f"replay has no option {option}"
    # The input is the bundled sample in drop-off order, written into the image by the Dockerfile.
    files = [arg for arg in command[3:] if arg.endswith(".csv")]
    assert files == ["data/tlc/tlc_trips_2019-03_by_dropoff.csv"]
    assert f"> {files[0]}" in DOCKERFILE.read_text()
    assert (ROOT / "data" / "tlc" / "tlc_trips_2019-03_sample.csv").exists()


def test_every_mounted_host_path_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, source in _bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        if "build" in service:
            assert (Path(service["build"]["context"]) / service["build"]["dockerfile"]).exists()


def test_prometheus_loads_the_alert_rules(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert _host_path(prometheus, config_arg.split("=", 1)[1]) == PROMETHEUS_CONFIG
    loaded: set[Path] = set()
    for pattern in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        host = _host_path(prometheus, pattern)
        loaded |= set(host.parent.glob(host.name))
    assert loaded == set(rule_files()) and loaded


def test_prometheus_scrapes_the_ports_the_services_listen_on(services: dict[str, dict[str, Any]]) -> None:
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}
    worker_sd = jobs["streampulse-worker"]["dns_sd_configs"][0]
    web_port = Settings.model_fields["web_port"].default
    assert worker_sd["names"] == ["worker"] and worker_sd["port"] == web_port
    assert str(web_port) in services["worker"]["expose"]
    assert f"'127.0.0.1', {web_port}" in services["worker"]["healthcheck"]["test"][-1]
    api_command = services["api"]["command"]
    api_port = api_command[api_command.index("--port") + 1]
    assert jobs["streampulse-api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert api_command[api_command.index("--host") + 1] == "0.0.0.0"
    alerting = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["alerting"]["alertmanagers"][0]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_alertmanager_config_is_valid(services: dict[str, dict[str, Any]]) -> None:
    alertmanager = services["alertmanager"]
    config_arg = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    path = _host_path(alertmanager, config_arg.split("=", 1)[1])
    exe = shutil.which("amtool")
    assert exe, "amtool is missing: `make setup` installs Debian's prometheus-alertmanager"
    result = subprocess.run(
        [exe, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_from_the_repository(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "grafana" / "provisioning"
    for provider in yaml.safe_load((provisioning / "dashboards" / "streampulse.yml").read_text())[
        "providers"
    ]:
        dashboards = _host_path(grafana, provider["options"]["path"])
        assert dashboards == ROOT / "grafana" / "dashboards"
        assert list(dashboards.glob("*.json"))
    for source in yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]:
        assert source["url"] == "http://prometheus:9090"
    assert _host_path(grafana, grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).exists()


def test_streampulse_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    known |= {f"{ENV_PREFIX}RETENTION_{size.name}" for size in Settings().window_sizes}
    for name in (*ENTRY_POINTS, "topic-init"):
        names = {key for key in services[name]["environment"] if key.startswith(ENV_PREFIX)}
        assert names - known == set(), name
    assert services["worker"]["environment"]["STREAMPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_partitions_come_from_one_variable(tmp_path: Path) -> None:
    services = compose_config(env={"STREAMPULSE_PARTITIONS": "12"})["services"]
    for name in ("topic-init", "worker", "api", "replay"):
        assert services[name]["environment"]["STREAMPULSE_PARTITIONS"] == "12", name
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "12"


def test_topic_init_runs_the_one_provisioning_path_with_the_workers_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    init, worker = services["topic-init"], services["worker"]
    shared = {k: v for k, v in worker["environment"].items() if k != "STREAMPULSE_REDIS_URL"}
    assert {k: v for k, v in init["environment"].items() if k in shared} == shared
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_redis_has_acl_users_and_the_services_use_them(services: dict[str, dict[str, Any]]) -> None:
    command = services["redis"]["command"]
    users = [command[i + 1 : i + 3] for i, arg in enumerate(command) if arg == "--user"]
    assert users == [["default", "off"], ["sp-worker", "on"], ["sp-api", "on"]]
    api_acl = command[command.index("sp-api") :]
    assert "+@write" not in api_acl and "-@all" in api_acl, "the API's user only reads"
    assert command[command.index("--maxmemory-policy") + 1] == "volatile-ttl"
    worker_url = services["worker"]["environment"]["STREAMPULSE_REDIS_URL"]
    api_url = services["api"]["environment"]["STREAMPULSE_REDIS_URL"]
    assert worker_url == f"redis://sp-worker:{TEST_REDIS_PASSWORDS['REDIS_WORKER_PASSWORD']}@redis:6379/0"
    assert api_url == f"redis://sp-api:{TEST_REDIS_PASSWORDS['REDIS_API_PASSWORD']}@redis:6379/0"
    assert not services["redis"].get("ports"), "Redis publishes no host port"


def test_monitoring_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name in ("prometheus", "alertmanager"):
        for port in services[name]["ports"]:
            assert port["host_ip"] == "127.0.0.1", (name, port)
