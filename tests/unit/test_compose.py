"""Docker does not run on this machine, so the compose file is checked against the code: every
service's command is a real `quickcart` subcommand with valid options, every variable it sets is
a setting, secrets are required, and the dependency graph waits on health."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from quickcart.cli import build_parser
from quickcart.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if "build" in svc]
SETTINGS = {name.upper() for name in Settings.model_fields}


def test_every_component_is_present() -> None:
    assert {"postgres", "redis", "migrate", "beat", "api", "bot", "flower"} <= set(SERVICES)
    workers = [n for n in SERVICES if n.startswith("worker-")]
    assert {"worker-payments", "worker-bulk"} <= set(workers), "payments isolated from bulk"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_command_is_a_valid_cli_invocation(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "quickcart"
    build_parser().parse_args(command[1:])  # exits (fails the test) on a bad subcommand/option


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_names_real_settings(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert set(env) <= SETTINGS, set(env) - SETTINGS


def test_secrets_are_required_not_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "TELEGRAM_BOT_TOKEN",
                   "PAKASIR_PROJECT", "PAKASIR_API_KEY", "FLOWER_USER", "FLOWER_PASSWORD"):
        # `$${VAR}` is escaped for the container shell, not compose interpolation.
        uses = re.findall(r"(?<!\$)\$\{" + secret + r"(:[?-][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), secret


def test_health_gates_and_single_beat() -> None:
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        if name == "migrate":
            continue
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name
    for infra in ("postgres", "redis"):
        assert "healthcheck" in SERVICES[infra]
    assert "noeviction" in SERVICES["redis"]["command"]
    assert "appendonly yes" in SERVICES["redis"]["command"]
    assert "deploy" not in SERVICES["beat"], "beat must never be replicated"
    assert "--basic-auth" not in " ".join(SERVICES["flower"]["command"])  # from env, not argv
