"""Settings: built once at start-up from `RUNAPI_*` variables and the `RUNAPI_CONFIG` TOML file.

The result is frozen and passed down; nothing reads the environment after start-up.
Provider secrets are named by env var in the config and read here, once, into memory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from runapi.catalog import Catalog, build_catalog, builtin_catalog_data
from runapi.limits import DEFAULT_TIERS, TierOverride, TierTable, build_tiers
from runapi.media_location import parse_media_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./runapi.db"


class ServerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[server]` table."""

    max_body_bytes: int = 4 * 1024 * 1024
    connect_timeout: float = 10.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 120.0
    public_base_url: str = ""
    # Host headers (host or host:port, lower case) whose URL pages may show when public_base_url is unset;
    # any other Host is not reflected (the server's own address is shown instead).
    allowed_hosts: tuple[str, ...] = ()
    max_attempts: int = 3  # upstream calls per request, across deployments and fallback models
    retry_backoff: float = 0.1  # base of the jittered exponential wait before re-trying a deployment
    retry_backoff_max: float = 2.0
    retry_after_cap: float = 5.0  # honour an upstream's retry-after up to this; longer skips the deployment
    # A deployment's circuit opens for everyone when, within `circuit_window` seconds, `circuit_failures`
    # requests failed, from `circuit_accounts` accounts or more, and they are `circuit_failure_rate` of its
    # requests; for one account alone after `circuit_failures` consecutive failed requests (0: never).
    circuit_failures: int = 5
    circuit_accounts: int = 3
    circuit_window: float = 60.0
    circuit_failure_rate: float = 0.5
    circuit_cooldown: float = 30.0  # seconds an open circuit waits before one trial call (half-open)
    auth_failures_per_minute: int = 100  # unknown keys from one client address before a lockout (0: off)
    auth_lockout: float = 60.0  # seconds a locked-out address gets 429 for keys not already cached
    # Where settlements are journaled so answers need not wait for the commit: "auto" (beside a SQLite
    # file; none for PostgreSQL), "off" (every answer waits for its commit), or a directory per host.
    settlement_journal: str = "auto"
    max_header_bytes: int = 32 * 1024  # a request line + headers above this get 431 at once (0: no cap)
    header_timeout: float = 10.0  # seconds a client has to send a request's line and headers (then 408, closed)
    body_timeout: float = 30.0  # longest silence while a request body is being received (then closed)
    min_body_rate: int = 1024  # bytes/s a request body must average once body_timeout has passed (0: no floor)
    max_response_bytes: int = 32 * 1024 * 1024  # largest upstream answer, or single stream event (then 502)
    # How often an instance reads the cache epoch after a commit (without Redis, how soon it sees another
    # instance's changes), and the longest an idle poller (epoch, task workers, webhooks) goes without a look.
    epoch_poll_interval: float = 0.5
    idle_poll_max: float = 10.0
    spend_reload_interval: float = 30.0  # seconds a spent total read without news of others' charges is trusted
    # Seconds between event-loop lag probes (`runapi_event_loop_lag_seconds`, `stalls.py`); 0: no probe.
    loop_lag_probe: float = 0.0


class TaskSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[tasks]` table: asynchronous tasks, their webhooks and cached outputs (durations in seconds)."""

    workers: int = 4  # tasks each gateway process runs at once
    poll_interval: float = 0.5  # how often idle workers look for queued tasks
    lease: float = 60.0  # a running task's claim; renewed while it runs, taken over once it lapses
    max_runs: int = 3  # runs of one task (crash re-runs included) before it is failed
    output_ttl: float = 86400.0  # how long a finished task's output URL works
    purge_interval: float = 60.0  # how often expired outputs and idempotency keys are deleted
    idempotency_ttl: float = 86400.0
    webhook_timeout: float = 10.0
    webhook_backoff: float = 5.0  # first retry delay; doubles per attempt
    webhook_backoff_max: float = 3600.0
    webhook_retry_window: float = 86400.0  # retries stop (delivery failed) this long after the event
    webhook_secret_grace: float = 86400.0  # a rotated-out secret still signs for this long
    webhook_allow: tuple[str, ...] = ()  # hosts, IPs or CIDRs exempt from the callback_url SSRF guard
    video_poll_initial: float = 5.0  # first wait before polling a submitted video job; grows x1.5 per poll
    video_poll_max: float = 30.0  # longest wait between two polls
    video_timeout: float = 3600.0  # a video job not done this long after submission is given up (free)


class MediaSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[media]` table: where generated images and videos are kept, and for how long (seconds)."""

    # Empty: a directory beside the SQLite database (runapi.db-media/), or ./runapi-media; a path or
    # file:///path; or s3://bucket/prefix?endpoint=URL&region=NAME for an S3-compatible store shared by
    # every instance. RUNAPI_MEDIA_URL overrides it.
    url: str = ""
    access_key_env: str = "AWS_ACCESS_KEY_ID"  # env var holding the S3 access key (never the key itself)
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    retention: float = 7 * 86400.0  # how long media is kept; its signed URLs stop working then (410)
    max_bytes: int = 512 * 1024 * 1024  # largest object kept (a bigger upstream file fails the download)
    download_timeout: float = 300.0  # whole copy of one upstream media URL into the store
    download_allow: tuple[str, ...] = ()  # hosts, IPs or CIDRs exempt from the download SSRF guard
    purge_interval: float = 300.0  # how often objects past their retention are deleted
    storage_timeout: float = 60.0  # one request to an S3-compatible store

    def __post_init__(self) -> None:
        if self.retention <= 0 or self.max_bytes <= 0 or self.download_timeout <= 0 or self.purge_interval <= 0:
            raise ValueError("media.retention, max_bytes, download_timeout and purge_interval must be positive")


class SiteSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[site]` table: where customers report problems, shown on the model pages (empty: not shown)."""

    issue_tracker_url: str = ""  # a public issue tracker, http(s)
    support_email: str = ""

    def __post_init__(self) -> None:
        if self.issue_tracker_url and not self.issue_tracker_url.startswith(("https://", "http://")):
            raise ValueError("site.issue_tracker_url must be an http(s) URL")
        local, at, domain = self.support_email.partition("@")
        if self.support_email and (not local or not at or "." not in domain or any(c in self.support_email
                                                                                   for c in " <>\"\r\n")):
            raise ValueError("site.support_email must be an e-mail address such as support@example.com")


class ConfigFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The operator's TOML file. Unknown top-level tables are an error, with their path."""

    server: ServerSettings = ServerSettings()
    site: SiteSettings = SiteSettings()
    providers: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    tiers: dict[str, TierOverride] = {}
    tasks: TaskSettings = TaskSettings()
    media: MediaSettings = MediaSettings()


class Settings(msgspec.Struct, frozen=True):
    database_url: str
    redis_url: str
    admin_token: str
    server: ServerSettings
    catalog: Catalog
    provider_keys: dict[str, str]  # provider name -> secret (never logged)
    tiers: TierTable = msgspec.field(default_factory=lambda: TierTable(tiers=dict(DEFAULT_TIERS)))
    tasks: TaskSettings = TaskSettings()
    site: SiteSettings = SiteSettings()
    output_secret: str = ""  # RUNAPI_OUTPUT_SECRET signs output URLs; empty: one generated and kept in the database
    metrics_token: str = ""  # RUNAPI_METRICS_TOKEN: bearer token for /metrics; empty: loopback clients only
    media: MediaSettings = MediaSettings()  # its url already overridden by RUNAPI_MEDIA_URL
    media_credentials: tuple[str, str] = ("", "")  # (access key, secret key) read from [media]'s env var names

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Settings(database_url={self.database_url!r}, redis_url={'set' if self.redis_url else ''!r})"


class ConfigError(Exception):
    """The configuration is invalid; the message says where and what to fix."""


def load_config_file(path: str | os.PathLike[str] | None) -> ConfigFile:
    if not path:
        return ConfigFile()
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
        return msgspec.convert(data, ConfigFile)
    except FileNotFoundError as exc:
        raise ConfigError(f"RUNAPI_CONFIG points at {path}, which does not exist") from exc
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_settings(env: Mapping[str, str] | None = None, config: ConfigFile | None = None) -> Settings:
    """Build the frozen settings from `env` (default: `os.environ`) and the config file."""
    env = os.environ if env is None else env
    if config is None:
        config = load_config_file(env.get("RUNAPI_CONFIG"))
    try:
        catalog = build_catalog(builtin_catalog_data(), config.providers, config.models)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"catalog: {exc}") from exc
    try:
        tiers = build_tiers(config.tiers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    media = msgspec.structs.replace(config.media, url=env.get("RUNAPI_MEDIA_URL") or config.media.url)
    try:
        parse_media_url(media.url, None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    keys = {
        name: env[spec.api_key_env]
        for name, spec in catalog.providers.items()
        if spec.api_key_env and env.get(spec.api_key_env)
    }
    return Settings(
        database_url=env.get("RUNAPI_DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("RUNAPI_REDIS_URL", ""),
        admin_token=env.get("RUNAPI_ADMIN_TOKEN", ""),
        server=config.server,
        catalog=catalog,
        tiers=tiers,
        provider_keys=keys,
        tasks=config.tasks,
        site=config.site,
        output_secret=env.get("RUNAPI_OUTPUT_SECRET", ""),
        metrics_token=env.get("RUNAPI_METRICS_TOKEN", ""),
        media=media,
        media_credentials=(env.get(config.media.access_key_env, ""), env.get(config.media.secret_key_env, "")),
    )
