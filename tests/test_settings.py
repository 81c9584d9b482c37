"""Configuration is read in one place and a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import ConfigError, Settings


def test_defaults_are_the_embedded_setup() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url is None and settings.jobs_inline
    assert settings.mail_transport == "outbox"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"MAIL_TRANSPORT": "pigeon"}, "MAIL_TRANSPORT"),
        ({"MAIL_TRANSPORT": "sendgrid"}, "SENDGRID_API_KEY"),
        ({"SENDGRID_API_HOST": "ftp://x"}, "SENDGRID_API_HOST"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM"),
        ({"INBOUND_DOMAIN": "not a domain"}, "INBOUND_DOMAIN"),
        ({"INBOUND_USERNAME": "sendgrid"}, "INBOUND_USERNAME"),
        ({"BASE_URL": "example.org"}, "BASE_URL"),
        ({"MAX_INBOUND_MB": "lots"}, "MAX_INBOUND_MB"),
        ({"SENDGRID_TIMEOUT": "-1"}, "SENDGRID_TIMEOUT"),
        ({"ROUNDTABLE_ENV": "production"}, "SECRET_KEY"),
        ({"BASE_URL": "https://räte.example"}, "BASE_URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_full_production_configuration() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://rt@db/rt",
            "REDIS_URL": "redis://cache:6379/0",
            "MAIL_TRANSPORT": "sendgrid",
            "SENDGRID_API_KEY": "SG.x",
            "MAIL_FROM": "Forum <forum@example.org>",
            "INBOUND_DOMAIN": "Parse.Example.org",
            "INBOUND_USERNAME": "sendgrid",
            "INBOUND_PASSWORD": "pw",
            "SECRET_KEY": "a-long-random-secret-value",
            "ROUNDTABLE_ENV": "production",
            "MAX_INBOUND_MB": "35",
        }
    )
    assert settings.inbound_domain == "parse.example.org"
    assert settings.max_inbound_bytes == 35 * 2**20
    assert not settings.jobs_inline
    assert "a-long" not in repr(settings)  # secrets stay out of logs


def test_production_refuses_to_start_without_the_inbound_webhook_credentials() -> None:
    production = {"ROUNDTABLE_ENV": "production", "SECRET_KEY": "a-long-random-secret-value"}
    with pytest.raises(ConfigError, match="INBOUND_USERNAME/INBOUND_PASSWORD: required in production"):
        Settings.from_env(production)
    with pytest.raises(ConfigError, match="INBOUND_USERNAME/INBOUND_PASSWORD"):
        Settings.from_env({**production, "INBOUND_PASSWORD": "pw"})
    settings = Settings.from_env({**production, "INBOUND_USERNAME": "sendgrid", "INBOUND_PASSWORD": "pw"})
    assert settings.inbound_username == "sendgrid"
    # Outside production the webhook may stay open (the demo, a laptop).
    assert Settings.from_env({"SECRET_KEY": "a-long-random-secret-value"}).inbound_username is None


def test_production_refuses_to_start_from_the_command_line_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("INBOUND_", "ROUNDTABLE_", "SECRET_KEY"))}
    env.update(ROUNDTABLE_ENV="production", SECRET_KEY="a-long-random-secret-value",
               DATABASE_URL=f"sqlite:///{tmp_path}/rt.db")
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", "from app.web import create_app; create_app()"],
        env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent, check=False,
    )
    assert result.returncode != 0
    assert "INBOUND_USERNAME/INBOUND_PASSWORD: required in production" in result.stderr
