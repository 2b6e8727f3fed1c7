"""deploy/ and docker-compose.yml: valid, consistent with the code, and complete.

The compose file is validated by Debian's ``docker-compose config`` (installed by .ci/run; no
Docker engine needed). Everything else is read as YAML and cross-checked against the code:
settings names, console scripts, source names, ports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from typing import Any

import yaml

from common.http import PRODUCER_PORT, WRITER_PORT
from common.settings import env_names
from common.settings_doc import env_example
from producers.registry import by_name
from tests.conftest import REPO, unavailable

HARDWARE = {"gps_nmea": "gps", "obd": "obd", "dyno_udp": "dyno", "afr_serial": "afr", "scales": "scales"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_env_example_lists_every_setting_at_its_default() -> None:
    text = (REPO / "deploy" / "telemetry.env.example").read_text()
    assert text == env_example(), "stale: python -m common.settings_doc --env-example > deploy/telemetry.env.example"
    listed = set(re.findall(r"^#(TELEMETRY_[A-Z0-9_]+)=", text, re.M))
    assert listed == set(env_names())


def test_compose_file_is_valid_for_docker_compose() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        unavailable("docker-compose not installed (apt-get install docker-compose; .ci/run does)")
    assert exe is not None
    profiles = sorted({*HARDWARE.values(), "monitoring"})
    args = [exe, "-f", str(REPO / "docker-compose.yml")] + [a for p in profiles for a in ("--profile", p)]
    run = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    services = subprocess.run([*args, "config", "--services"], capture_output=True, text=True, timeout=60)
    assert set(services.stdout.split()) == set(compose()["services"])


def test_compose_services_profiles_devices_healthchecks() -> None:
    services = compose()["services"]
    assert {"redis", "postgres", "migrate", "writer", "rq-worker", "producer-simulate"} <= set(services)
    assert services["writer"]["deploy"]["replicas"] >= 2
    assert "profiles" not in services["producer-simulate"], "simulate must run on a plain `docker compose up`"
    for source, profile in HARDWARE.items():
        svc = services[f"producer-{source}"]
        assert svc["profiles"] == [profile]
        assert svc["command"] == ["telemetry-produce", source]
        if source != "dyno_udp":  # UDP multicast: host network instead of a device
            assert svc["devices"] and all(d.startswith("/dev/") for d in svc["devices"])
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and re.search(r"^USER telemetry", dockerfile, re.M)
    for name, svc in services.items():
        from_image = svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
        assert "healthcheck" in svc or from_image, f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
    assert services["writer"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["telemetry-admin", "migrate"]


def test_compose_environment_uses_only_real_settings_and_ports() -> None:
    known = env_names()
    for name, svc in compose()["services"].items():
        env = svc.get("environment") or {}
        for key in env:
            if key.startswith("TELEMETRY_"):
                assert key in known, f"{name}: unknown setting {key}"
        if name == "writer":
            assert int(env["TELEMETRY_HTTP__PORT"]) == WRITER_PORT
        elif name.startswith("producer-") and name != "producer-dyno_udp":
            assert int(env["TELEMETRY_HTTP__PORT"]) == PRODUCER_PORT
            assert name.removeprefix("producer-") in by_name()


def test_prometheus_scrapes_the_compose_services() -> None:
    conf = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert jobs["telemetry-writer"]["dns_sd_configs"][0] == {
        "names": ["writer"],
        "type": "A",
        "port": WRITER_PORT,
        "refresh_interval": "30s",
    }
    services = compose()["services"]
    for target in jobs["telemetry-producer"]["static_configs"][0]["targets"]:
        host, port = target.split(":")
        assert host in services and int(port) == PRODUCER_PORT


def test_redis_conf_persists_and_never_evicts() -> None:
    conf = dict(
        line.split(None, 1)
        for line in (REPO / "deploy" / "redis" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["aclfile"] == "/usr/local/etc/redis/users.acl"
    mounts = compose()["services"]["redis"]["volumes"]
    assert "./deploy/secrets/users.acl:/usr/local/etc/redis/users.acl:ro" in mounts  # rendered from the template
    assert "render-acl.sh" in (REPO / "deploy" / "make-secrets.sh").read_text()


def test_systemd_units_run_the_console_scripts() -> None:
    scripts = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]) | {"rq"}
    units = sorted((REPO / "deploy" / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {"telemetry-writer@.service", "telemetry-producer@.service"}
    for unit in units:
        text = unit.read_text()
        exec_start = re.search(r"^ExecStart=(\S+)", text, re.M)
        assert exec_start and exec_start.group(1).rsplit("/", 1)[-1] in scripts, unit.name
        assert "User=telemetry" in text and "EnvironmentFile=/etc/telemetry/telemetry.env" in text


def test_producers_spool_by_default_in_compose_and_systemd() -> None:
    """Issue 10.8: the shipped deployments left the spool off, so a Redis restart lost what was read."""
    spool = "/var/lib/telemetry/spool"
    c = compose()
    assert "producer-spool" in c["volumes"]
    for name, svc in c["services"].items():
        if not name.startswith("producer-"):
            continue
        assert svc["environment"]["TELEMETRY_PRODUCER__SPOOL_DIR"] == spool, name
        assert f"producer-spool:{spool}" in svc["volumes"], name
        # a stable name: the spool folder is per producer name, <source>@<hostname> by default
        assert svc.get("hostname") or svc.get("network_mode") == "host", name
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"mkdir -p {spool}" in dockerfile and "chown -R telemetry:telemetry /var/lib/telemetry" in dockerfile
    unit = (REPO / "deploy" / "systemd" / "telemetry-producer@.service").read_text()
    assert "ProtectSystem=strict" in unit  # so the spool needs a writable state directory:
    assert re.search(r"^StateDirectory=telemetry/spool$", unit, re.M)
    assert re.search(r"^Environment=TELEMETRY_PRODUCER__SPOOL_DIR=%S/telemetry/spool$", unit, re.M)
    # Environment= comes before the env files, which may override it
    assert unit.index("Environment=TELEMETRY_PRODUCER__SPOOL_DIR") < unit.index("EnvironmentFile=")


def test_the_archive_has_a_volume_in_compose_and_a_state_directory_in_systemd() -> None:
    """Issue 15: the cold tier's files outlive containers and are written by the tables' owner."""
    archive = "/var/lib/telemetry/archive"
    c = compose()
    svc = c["services"]["archiver"]
    assert "archive-data" in c["volumes"] and f"archive-data:{archive}" in svc["volumes"]
    assert svc["environment"]["TELEMETRY_ARCHIVE__DIR"] == archive
    assert "telemetry_owner" in svc["environment"]["TELEMETRY_POSTGRES__DSN"]
    assert "archive export --due" in " ".join(svc["command"])
    assert f"mkdir -p /var/lib/telemetry/spool {archive}" in (REPO / "deploy" / "Dockerfile").read_text()
    unit = (REPO / "deploy" / "systemd" / "telemetry-archive.service").read_text()
    assert re.search(r"^StateDirectory=telemetry/archive$", unit, re.M)
    assert re.search(r"^Environment=TELEMETRY_ARCHIVE__DIR=%S/telemetry/archive$", unit, re.M)
    assert (REPO / "deploy" / "systemd" / "telemetry-archive.timer").exists()


def test_every_compose_secret_has_a_file_from_make_secrets_and_the_detector_uses_its_own() -> None:
    """The run detector ran with the writer's Redis user and the owner's PostgreSQL role."""
    c = compose()
    made = (REPO / "deploy" / "make-secrets.sh").read_text()
    for name, secret in c["secrets"].items():
        assert secret["file"] == f"./deploy/secrets/{name}" and name in made, name
    for name, svc in c["services"].items():
        assert set(svc.get("secrets", [])) <= set(c["secrets"]), name
        for key, value in (svc.get("environment") or {}).items():
            if str(value).startswith("/run/secrets/"):
                assert value.rsplit("/", 1)[1] in svc["secrets"], (name, key)
    runs = c["services"]["runs"]
    env = runs["environment"]
    assert env["TELEMETRY_REDIS__USERNAME"] == "runs"
    assert env["TELEMETRY_POSTGRES__DSN"].startswith("postgresql://telemetry_run_detector@")
    assert sorted(runs["secrets"]) == ["pg_runs_password", "redis_runs_password"]
    postgres = c["services"]["postgres"]
    assert postgres["environment"]["PG_RUNS_PASSWORD_FILE"] == "/run/secrets/pg_runs_password"
    assert "user runs on #@RUNS_SHA256@" in (REPO / "deploy" / "redis" / "users.acl").read_text()
    assert " runs; do" in (REPO / "deploy" / "redis" / "render-acl.sh").read_text()
    unit = (REPO / "deploy" / "systemd" / "telemetry-runs.service").read_text()
    assert "EnvironmentFile=-/etc/telemetry/runs.env" in unit and "TELEMETRY_REDIS__USERNAME=runs" in unit
