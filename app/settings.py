"""Configuration, read from the environment in this one place and validated at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TRANSPORTS = ("outbox", "sendgrid")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///roundtable.db"
    redis_url: str | None = None
    mail_transport: str = "outbox"
    outbox_dir: Path = Path("outbox")
    packets_dir: Path = Path("packets")
    sendgrid_api_key: str | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_timeout_s: float = 10.0
    database_timeout_s: float = 5.0  # the web's wait for the database: connect, statement, pool
    mail_from: str = "Roundtable <roundtable@localhost>"
    inbound_domain: str = "in.localhost"
    inbound_username: str | None = None
    inbound_password: str | None = None
    secret_key: str = field(default="dev-insecure-secret", repr=False)
    base_url: str = "http://localhost:8000"
    max_inbound_bytes: int = 40 * 1024 * 1024
    sendgrid_webhook_public_key: str | None = None
    event_max_age_s: int = 600

    @property
    def jobs_inline(self) -> bool:
        """Without Redis, jobs run in-process right after the commit that asked for them."""
        return self.redis_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment; raise ConfigError naming the bad variable."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        defaults = cls()
        database_url = get("DATABASE_URL") or defaults.database_url
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", database_url):
            raise ConfigError(
                f"DATABASE_URL: expected a sqlite:/// or postgresql:// URL, got {database_url!r}"
            )
        redis_url = get("REDIS_URL")
        if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL: expected redis://host:port/db, got {redis_url!r}")
        transport = (get("MAIL_TRANSPORT") or defaults.mail_transport).lower()
        if transport not in TRANSPORTS:
            raise ConfigError(f"MAIL_TRANSPORT: must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        api_key = get("SENDGRID_API_KEY")
        if transport == "sendgrid" and not api_key:
            raise ConfigError("SENDGRID_API_KEY: required when MAIL_TRANSPORT=sendgrid")
        api_host = get("SENDGRID_API_HOST") or defaults.sendgrid_api_host
        if urlsplit(api_host).scheme not in ("http", "https"):
            raise ConfigError(f"SENDGRID_API_HOST: expected an http(s) URL, got {api_host!r}")
        mail_from = get("MAIL_FROM") or defaults.mail_from
        if not re.search(r"(?<![^@\s<])[^@\s<]+@[^@\s>]+", mail_from):
            raise ConfigError(f"MAIL_FROM: expected an address like 'Name <a@b.org>', got {mail_from!r}")
        inbound_domain = (get("INBOUND_DOMAIN") or defaults.inbound_domain).lower()
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", inbound_domain):
            raise ConfigError(f"INBOUND_DOMAIN: expected a domain like parse.example.org, got {inbound_domain!r}")
        username, password = get("INBOUND_USERNAME"), get("INBOUND_PASSWORD")
        if bool(username) != bool(password):
            raise ConfigError("INBOUND_USERNAME/INBOUND_PASSWORD: set both or neither")
        base_url = (get("BASE_URL") or defaults.base_url).rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"BASE_URL: expected an http(s) URL, got {base_url!r}")
        if not base_url.isascii():
            # It goes into List-Unsubscribe, a header that must be plain ASCII: use the punycode name.
            raise ConfigError(f"BASE_URL: expected an ASCII URL (punycode for the host), got {base_url!r}")
        secret_key = get("SECRET_KEY") or defaults.secret_key
        production = env.get("ROUNDTABLE_ENV", "").strip().lower() == "production"
        if production and (secret_key == defaults.secret_key or len(secret_key) < 16):
            raise ConfigError("SECRET_KEY: set a random value of 16+ characters in production")
        if production and not username:
            # Without them the inbound webhook takes a POST from anyone: forged replies, in any
            # member's name, straight into the packet.
            raise ConfigError(
                "INBOUND_USERNAME/INBOUND_PASSWORD: required in production (basic auth on the "
                "inbound webhook URL you give SendGrid)"
            )
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            mail_transport=transport,
            outbox_dir=Path(get("OUTBOX_DIR") or defaults.outbox_dir),
            packets_dir=Path(get("PACKETS_DIR") or defaults.packets_dir),
            sendgrid_api_key=api_key,
            sendgrid_api_host=api_host.rstrip("/"),
            sendgrid_timeout_s=_positive_float(env, "SENDGRID_TIMEOUT", defaults.sendgrid_timeout_s),
            database_timeout_s=_positive_float(env, "DATABASE_TIMEOUT", defaults.database_timeout_s),
            mail_from=mail_from,
            inbound_domain=inbound_domain,
            inbound_username=username,
            inbound_password=password,
            secret_key=secret_key,
            base_url=base_url,
            sendgrid_webhook_public_key=get("SENDGRID_WEBHOOK_PUBLIC_KEY"),
            event_max_age_s=int(_positive_float(env, "EVENT_MAX_AGE_S", defaults.event_max_age_s)),
            max_inbound_bytes=int(
                _positive_float(env, "MAX_INBOUND_MB", defaults.max_inbound_bytes / 2**20) * 2**20
            ),
        )


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0, got {raw!r}")
    return value


_current: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Make `settings` the process's settings (the CLI, create_app and tests call this)."""
    global _current
    _current = settings


def current_settings() -> Settings:
    """The process's settings; read from the environment on first use, never at import."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current
