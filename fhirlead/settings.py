"""Server settings: one immutable object built from CLI flags and `FHIRLEAD_*` environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FHIRLEAD_{name}", default)


def source_trust(text: str) -> tuple[tuple[str, float], ...]:
    """`https://hospital.example.org/fhir=2,https://pcp.example.org/fhir=1`: how far each source system
    (`meta.source`) is trusted when one person's records are merged (higher first; unnamed: 0)."""
    ranks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, equals, weight = item.rpartition("=")
        try:
            ranks.append((source.strip(), float(weight)))
        except ValueError:
            equals = ""
        if not equals or not source.strip():
            raise ValueError(f"FHIRLEAD_SOURCE_TRUST: {item!r} is not <source URI>=<number>")
    return tuple(ranks)


def required_profiles(text: str) -> tuple[tuple[str, str, str | None], ...]:
    """`[{"type": "Group", "profile": "<canonical>", "when": "<FHIRPath>"}, ...]` (JSON): every resource of
    `type` written (for which `when`, evaluated on it, is true, if given) must conform to `profile`,
    whether or not it claims it in `meta.profile` (docs/validation.md, "Required profiles")."""
    if not text.strip():
        return ()
    try:
        items = json.loads(text)
        rules = tuple((item["type"], item["profile"], item.get("when")) for item in items)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError("FHIRLEAD_REQUIRED_PROFILES: a JSON list of {\"type\", \"profile\"[, \"when\"]} "
                         f"objects ({type(error).__name__})") from error
    if not all(isinstance(part, str) for rule in rules for part in rule[:2]) or \
            not all(rule[2] is None or isinstance(rule[2], str) for rule in rules):
        raise ValueError("FHIRLEAD_REQUIRED_PROFILES: type, profile and when are strings")
    return rules


@dataclass(frozen=True)
class Settings:
    host: str = field(default_factory=lambda: _env("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("PORT", "8080")))
    store: str = field(default_factory=lambda: _env("STORE", "sqlite:///./fhirlead.db"))
    # Public base URL of the FHIR endpoint (e.g. behind a proxy); derived from each request when empty.
    base_url: str = field(default_factory=lambda: _env("BASE_URL", ""))
    max_body_bytes: int = field(default_factory=lambda: int(_env("MAX_BODY_BYTES", str(64 * 1024 * 1024))))
    # A request body must arrive within this many seconds (408 otherwise); headers may total this many
    # bytes (431 otherwise).
    body_timeout_seconds: float = field(default_factory=lambda: float(_env("BODY_TIMEOUT_SECONDS", "30")))
    max_header_bytes: int = field(default_factory=lambda: int(_env("MAX_HEADER_BYTES", str(32 * 1024))))
    # Connections served at once (more are answered 503 by uvicorn) and how long an idle keep-alive
    # connection is kept open.
    max_connections: int = field(default_factory=lambda: int(_env("MAX_CONNECTIONS", "1000")))
    keep_alive_seconds: int = field(default_factory=lambda: int(_env("KEEP_ALIVE_SECONDS", "5")))
    default_page_size: int = field(default_factory=lambda: int(_env("DEFAULT_PAGE_SIZE", "50")))
    max_page_size: int = field(default_factory=lambda: int(_env("MAX_PAGE_SIZE", "1000")))
    # How far each source system is trusted when `$aggregate-patient` and `$summary` merge one person's
    # records (docs/identity.md): most trusted first, then the most recently updated.
    source_trust: tuple[tuple[str, float], ...] = field(default_factory=lambda: source_trust(_env("SOURCE_TRUST", "")))
    # Profiles every write of a type must meet, claimed or not (e.g. every attribution-list Group atr-group).
    required_profiles: tuple[tuple[str, str, str | None], ...] = field(
        default_factory=lambda: required_profiles(_env("REQUIRED_PROFILES", "")))
    # Authorization (SMART on FHIR) is on unless explicitly turned off (FHIRLEAD_AUTH=off).
    auth: bool = field(default_factory=lambda: _env("AUTH", "on").lower() not in ("off", "false", "0", "no"))
    # The audit trail (AuditEvents for every request) runs whenever authorization is on, unless
    # FHIRLEAD_AUDIT=off (for measurements; the server warns at start-up).
    audit: bool = field(default_factory=lambda: _env("AUDIT", "on").lower() not in ("off", "false", "0", "no"))
    # Where AuditEvents are built and stored: "process" (a writer process of its own, on another core) or
    # "inline" (in the server process). A store the child cannot open by URL is always written inline.
    audit_writer: str = field(default_factory=lambda: _env("AUDIT_WRITER", "process"))
    # The plugins' background workers (care-gap re-evaluation, ...) in `fhirlead serve`; "off" leaves the
    # jobs recorded for another server process on the same store.
    workers: bool = field(default_factory=lambda: _env("WORKERS", "on").lower() not in ("off", "false", "0", "no"))
    # A worker process validating transaction Bundles while the server writes others, in `fhirlead serve`
    # on Linux with 2+ cores (docs/validation.md); "off": the server validates everything itself.
    validation_worker: bool = field(
        default_factory=lambda: _env("VALIDATION_WORKER", "on").lower() not in ("off", "false", "0", "no"))
    # A folder of care-coordination rule files in force beside the shipped ones (docs/care-coordination.md).
    care_rules_dir: str = field(default_factory=lambda: _env("CARE_RULES_DIR", ""))
    # Where rest-hook Subscriptions may deliver (fhirlead.subscriptions.endpoints): "public" (https to
    # public addresses), "loopback" (also this machine's loopback, http allowed) or "private" (also https
    # to private ranges). Failed deliveries are retried after retry_seconds, doubling up to 5 minutes;
    # after max_attempts failures in a row the Subscription goes to status error.
    subscription_endpoints: str = field(default_factory=lambda: _env("SUBSCRIPTION_ENDPOINTS", "loopback"))
    subscription_retry_seconds: float = field(
        default_factory=lambda: float(_env("SUBSCRIPTION_RETRY_SECONDS", "5")))
    subscription_max_attempts: int = field(default_factory=lambda: int(_env("SUBSCRIPTION_MAX_ATTEMPTS", "8")))
    # Bulk Data $export (docs/bulk-export.md): where NDJSON files are written (empty: `exports` beside a
    # SQLite store's file, else ./fhirlead-exports), how long a finished export's files stay (seconds), and
    # how many exports may run at once (more are answered 429).
    export_dir: str = field(default_factory=lambda: _env("EXPORT_DIR", ""))
    export_expire_seconds: float = field(default_factory=lambda: float(_env("EXPORT_EXPIRE_SECONDS", "86400")))
    export_max_running: int = field(default_factory=lambda: int(_env("EXPORT_MAX_RUNNING", "2")))
    access_token_seconds: int = field(default_factory=lambda: int(_env("ACCESS_TOKEN_SECONDS", "900")))
    refresh_token_seconds: int = field(default_factory=lambda: int(_env("REFRESH_TOKEN_SECONDS", str(30 * 86400))))
    key_rotation_seconds: int = field(default_factory=lambda: int(_env("KEY_ROTATION_SECONDS", str(86400))))
