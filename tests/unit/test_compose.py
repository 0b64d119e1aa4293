"""compose/docker-compose.yml is a valid Compose project (checked by the Docker Compose CLI against
the Compose specification), its StreamPulse services run real entry points of the project, every
mounted file exists, and the pieces agree with each other (ports, topics, settings, rules).

There is no Docker engine to run the stack, so its security is checked here on the resolved
project and on the scripts it mounts (run for real where they can be: openssl makes the
certificates, Kafka's own storage tool reads the broker's configuration): Kafka clients only over
SASL_SSL as their own principal, no plaintext listener other containers can reach, the local
stack's ACLs, ports on loopback, no secret in the repository."""

from __future__ import annotations

import ast
import os
import re
import shlex
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
    TEST_KAFKA_PASSWORDS,
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
#: The Kafka principal of each service that connects to Kafka (the API never does).
KAFKA_PRINCIPALS = {
    "topic-init": "streampulse-worker",
    "worker": "streampulse-worker",
    "replay": "streampulse-ingest",
}
KAFKA_SCRIPTS = ROOT / "compose" / "kafka"
STACK_SH = ROOT / "scripts" / "stack.sh"


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
        "--profile",
        "*",
        "config",
        "--quiet",
        env={"GRAFANA_ADMIN_PASSWORD": "x", **TEST_REDIS_PASSWORDS, **TEST_KAFKA_PASSWORDS},
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
        "kafka-init",
        "kafka",
        "kafka-acls",
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
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert version, "scripts/kafka/pom.xml names the local stack's Kafka version"
    assert kafka["image"] == f"apache/kafka:{version[1]}", "the same Kafka as the local stack"
    assert services["kafka-acls"]["image"] == kafka["image"]
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
    assert built == set(ENTRY_POINTS) | {"kafka-init"}
    assert services["kafka-init"]["entrypoint"] == ["/bin/sh", "/opt/streampulse/make-certs.sh"]
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
    assert services["worker"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{web_port}/ready"
    api_command = services["api"]["command"]
    api_port = api_command[api_command.index("--port") + 1]
    assert services["api"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{api_port}/ready"
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
    assert services["worker"]["environment"]["STREAMPULSE_KAFKA_BOOTSTRAP"] == "kafka:9094"


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


def test_every_published_port_is_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"api", "prometheus", "alertmanager", "grafana"}, "Kafka and Redis: none"
    for name, ports in published.items():
        for port in ports:
            assert port["host_ip"] == "127.0.0.1", (name, port)


def _listeners(kafka_env: dict[str, str], key: str) -> dict[str, tuple[str, int]]:
    """Listener name -> (host, port) of KAFKA_LISTENERS or KAFKA_ADVERTISED_LISTENERS."""
    out = {}
    for listener in kafka_env[key].split(","):
        name, host, port = re.fullmatch(r"([A-Z_]+)://([^:]*):(\d+)", listener).groups()  # type: ignore[union-attr]
        out[name] = (host, int(port))
    return out


def test_kafka_clients_reach_only_a_sasl_ssl_listener(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(env, "KAFKA_LISTENERS")
    advertised = _listeners(env, "KAFKA_ADVERTISED_LISTENERS")
    assert set(listeners) <= set(protocols)
    for name, (host, _) in listeners.items():
        if protocols[name] != "SASL_SSL":
            assert host == "127.0.0.1", f"{name} ({protocols[name]}) must bind the broker's loopback"
            assert advertised.get(name, ("127.0.0.1", 0))[0] == "127.0.0.1", name
    sasl = [name for name, protocol in protocols.items() if protocol == "SASL_SSL"]
    assert sasl == ["SASL_SSL"] and advertised["SASL_SSL"] == ("kafka", listeners["SASL_SSL"][1])
    assert protocols[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "PLAINTEXT"
    assert listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]][0] == "127.0.0.1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@127.0.0.1:{listeners['CONTROLLER'][1]}"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_SSL_KEYSTORE_LOCATION"] == "/etc/kafka/tls/broker.pem"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:ANONYMOUS", "only the loopback listeners' principal"
    # Only kafka-acls shares the broker's network namespace, so only it reaches the loopback.
    shared = {n for n, s in services.items() if s.get("network_mode", "").startswith("service:")}
    assert shared == {"kafka-acls"} and services["kafka-acls"]["network_mode"] == "service:kafka"

    for name, service in services.items():
        client_env = {
            k: v for k, v in service.get("environment", {}).items() if k.startswith("STREAMPULSE_KAFKA")
        }
        if name not in KAFKA_PRINCIPALS:
            assert not client_env, f"{name} is no Kafka client and gets no Kafka settings"
            continue
        user = KAFKA_PRINCIPALS[name]
        secret = "KAFKA_INGEST_PASSWORD" if user == "streampulse-ingest" else "KAFKA_WORKER_PASSWORD"
        assert client_env == {
            "STREAMPULSE_KAFKA_BOOTSTRAP": f"kafka:{listeners['SASL_SSL'][1]}",
            "STREAMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAMPULSE_KAFKA_SASL_USERNAME": user,
            "STREAMPULSE_KAFKA_SASL_PASSWORD": TEST_KAFKA_PASSWORDS[secret],
            "STREAMPULSE_KAFKA_SSL_CAFILE": "/etc/streampulse/kafka-ca/ca.pem",
        }, name
        mounts = {v["target"]: v for v in service["volumes"]}
        ca = mounts["/etc/streampulse/kafka-ca"]
        assert ca["source"] == "kafka-ca" and ca["read_only"], name
        assert "kafka-tls" not in {v.get("source") for v in service["volumes"]}, (
            "the broker's key stays its own"
        )


def _acl_commands(script: Path) -> list[list[str]]:
    """The ACLs a script adds: each kafka-acls call from ``--allow-principal`` on, shell-split."""
    text = re.sub(r"\\\n\s*", " ", script.read_text())
    calls = []
    for line in text.splitlines():
        if "--allow-principal" in line:
            words = shlex.split(line, posix=False)
            calls.append(words[words.index("--allow-principal") :])
    return calls


def _topics(words: list[str]) -> list[str]:
    """The topics of one ACL command; a prefixed pattern as its prefix without the closing quote."""
    topics = [words[i + 1] for i, word in enumerate(words) if word == "--topic"]
    if "prefixed" in words:
        return [t.rstrip('"') for t in topics]
    return topics


def test_kafka_acls_are_the_local_stacks(services: dict[str, dict[str, Any]]) -> None:
    compose_acls = _acl_commands(KAFKA_SCRIPTS / "acls.sh")
    assert compose_acls == _acl_commands(STACK_SH)
    assert len(compose_acls) == 6

    def writers(topic: str) -> set[str]:
        return {
            words[1]
            for words in compose_acls
            if ("Write" in words or "All" in words) and any(topic.startswith(t) for t in _topics(words))
        }

    assert writers('"${p}window-results"') == {'"$worker"'}, "nobody else writes window-results"
    assert writers('"$app_id-window-state-changelog"') == {'"$worker"'}, "nor the changelog"
    for words in compose_acls:
        if words[1] == '"$ingest"' and "Write" in words:
            assert words[words.index("--topic") + 1 :] == ['"${p}events"'], "ingestion writes events only"
    acls_sh = (KAFKA_SCRIPTS / "acls.sh").read_text()
    assert "ingest=User:streampulse-ingest" in acls_sh and "worker=User:streampulse-worker" in acls_sh
    assert "--bootstrap-server 127.0.0.1:9092" in acls_sh
    assert _listeners(services["kafka"]["environment"], "KAFKA_LISTENERS")["INTERNAL"] == ("127.0.0.1", 9092)
    assert services["topic-init"]["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"


def test_scram_passwords_are_compose_secrets_from_the_env_file(config: dict[str, Any]) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["entrypoint"] == ["/bin/bash", "/opt/streampulse/broker.sh"]
    assert {s["source"] for s in kafka["secrets"]} == {"ingest_password", "worker_password"}
    assert config["secrets"]["ingest_password"]["environment"] == "KAFKA_INGEST_PASSWORD"
    assert config["secrets"]["worker_password"]["environment"] == "KAFKA_WORKER_PASSWORD"
    assert not any("PASSWORD" in key for key in kafka["environment"]), "never in the broker's environment"
    assert kafka["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    result = docker_compose(
        "--profile",
        "*",
        "config",
        "--quiet",
        env={"GRAFANA_ADMIN_PASSWORD": "x", **TEST_REDIS_PASSWORDS, "KAFKA_INGEST_PASSWORD": "x"},
    )
    assert result.returncode != 0 and "KAFKA_WORKER_PASSWORD" in result.stderr, "required, no default"


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_broker_sh_renders_the_config_kafka_accepts_and_formats_with_the_scram_users(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """broker.sh for real, with the service's environment; Kafka's own storage tool (the local
    stack's jars) formats with the configuration it wrote; the server start is a stub."""
    lib = ROOT / ".cache" / "kafka" / services["kafka"]["image"].split(":")[1] / "lib"
    assert lib.is_dir(), "Kafka's jars are missing: `make setup` downloads them"
    home, secrets, data = tmp_path / "kafka", tmp_path / "secrets", tmp_path / "data"
    for directory in (home / "bin", home / "config", secrets, data):
        directory.mkdir(parents=True)
    _stub(
        home / "bin" / "kafka-storage.sh",
        f'echo "$@" > {tmp_path}/format.args\nexec java -cp "{lib}/*" kafka.tools.StorageTool "$@"\n',
    )
    _stub(home / "bin" / "kafka-server-start.sh", f'cp "$1" {tmp_path}/started.properties\n')
    passwords = {"ingest": "a1b2c3d4e5f6", "worker": "0f9e8d7c6b5a"}
    for user, password in passwords.items():
        (secrets / f"{user}_password").write_text(password)
    env = {k: str(v) for k, v in services["kafka"]["environment"].items()}
    env |= {"KAFKA_LOG_DIRS": str(data), "BROKER_HOME": str(home), "BROKER_SECRETS": str(secrets)}
    env |= {"PATH": os.environ["PATH"], "KAFKA_HEAP_OPTS": "-Xmx256m"}
    result = _run(["bash", str(KAFKA_SCRIPTS / "broker.sh")], env)
    assert result.returncode == 0, result.stdout + result.stderr
    props = dict(
        line.split("=", 1) for line in (tmp_path / "started.properties").read_text().splitlines() if line
    )
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    )
    assert props["listeners"] == env["KAFKA_LISTENERS"] and props["ssl.keystore.type"] == "PEM"
    assert "heap.opts" not in props and "cluster.id" not in props
    assert (data / "meta.properties").exists(), "Kafka's storage tool formatted the log directory"
    args = (tmp_path / "format.args").read_text()
    for user, password in passwords.items():
        assert f"SCRAM-SHA-512=[name=streampulse-{user},password={password}]" in args
    assert not any(p in result.stdout + result.stderr for p in passwords.values()), "no password printed"
    rerun = _run(["bash", str(KAFKA_SCRIPTS / "broker.sh")], env)
    assert rerun.returncode == 0 and "formatted" not in rerun.stdout, "formatted once, on the first start"


def test_kafka_init_makes_a_certificate_for_kafka_signed_by_its_ca(tmp_path: Path) -> None:
    tls, ca = tmp_path / "tls", tmp_path / "ca"
    tls.mkdir()
    ca.mkdir()
    script = ["sh", str(KAFKA_SCRIPTS / "make-certs.sh"), str(tls), str(ca)]
    result = _run(script)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in ca.iterdir()) == ["ca.pem"], "the CA key is not kept"
    assert sorted(p.name for p in tls.iterdir()) == ["broker.pem"]
    store = tls / "broker.pem"
    assert store.stat().st_mode & 0o777 == 0o400 and store.stat().st_uid == 1000
    assert (ca / "ca.pem").stat().st_mode & 0o777 == 0o644
    text = store.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----"), "Kafka's PEM key store: PKCS#8 key first"
    cert = tmp_path / "broker.crt"
    cert.write_text(text[text.index("-----BEGIN CERTIFICATE-----") :])
    verify = _run(
        ["openssl", "verify", "-CAfile", str(ca / "ca.pem"), "-verify_hostname", "kafka", str(cert)]
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wrong = _run(["openssl", "verify", "-CAfile", str(ca / "ca.pem"), "-verify_hostname", "redis", str(cert)])
    assert wrong.returncode != 0, "the certificate names kafka only"
    before = store.read_bytes()
    again = _run(script)
    assert again.returncode == 0 and store.read_bytes() == before, "made once: clients keep trusting it"


def test_no_secret_is_committed(config: dict[str, Any]) -> None:
    raw = COMPOSE_FILE.read_text()
    secret_vars = set(re.findall(r"\$\{([A-Z_]*PASSWORD[A-Z_]*)", raw))
    assert secret_vars == {
        "GRAFANA_ADMIN_PASSWORD",
        "REDIS_WORKER_PASSWORD",
        "REDIS_API_PASSWORD",
        "KAFKA_INGEST_PASSWORD",
        "KAFKA_WORKER_PASSWORD",
    }
    for name in secret_vars:
        defaults = re.findall(rf"\$\{{{name}(:?[-=+])", raw)
        assert not defaults, f"{name} has a default in the Compose file"
        assert f"${{{name}:?" in raw, f"{name} is required"
    test_values = [TEST_GRAFANA_PASSWORD, *TEST_REDIS_PASSWORDS.values(), *TEST_KAFKA_PASSWORDS.values()]
    assert all(value not in raw for value in test_values)
    resolved = str(config)
    assert all(value in resolved for value in TEST_KAFKA_PASSWORDS.values()), "they come from the environment"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env is never committed"
    assert not list((ROOT / "compose").rglob("*.pem")) and not list((ROOT / "compose").rglob("*.key"))
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, _, value = line.partition("=")
        if "PASSWORD" in name and not name.startswith("#"):
            assert "local" in value, f".env.example's {name} is a placeholder for a local machine"


#: The oldest release of an image without a known vulnerability that matters here, and why.
PATCHED = {
    "redis": ((8, 6, 3), "CVE-2026-23479, use-after-free in the unblock flow (7.2.0-8.6.2)"),
    "grafana/grafana": ((12, 4, 5), "12.2 is past its end of life; 12.4.5 fixes JWT role mapping"),
}


def test_images_are_pinned_to_patched_releases(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image, _, tag = service["image"].partition(":")
        release = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(-alpine)?", tag)
        assert release, f"{name}: {service['image']} is not pinned to a release"
        if image in PATCHED:
            oldest, why = PATCHED[image]
            assert tuple(int(part) for part in release.groups()[:3]) >= oldest, f"{name}: {why}"
    assert {s["image"].partition(":")[0] for s in services.values()} >= set(PATCHED)
