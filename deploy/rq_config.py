"""rq worker settings (``rq worker --path deploy -c rq_config imports``).

Builds REDIS_URL from the TELEMETRY_REDIS__* settings, so the ACL user's password comes from
TELEMETRY_REDIS__PASSWORD_FILE and never appears in the worker's argv or environment.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from common.settings import load_settings


def _redis_url() -> str:
    s = load_settings().redis
    if not (s.username or s.password):
        return s.url
    parts = urlsplit(s.url)
    user = quote(s.username or "default", safe="")
    secret = quote(s.password.get_secret_value(), safe="") if s.password else ""
    netloc = f"{user}:{secret}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


REDIS_URL = _redis_url()
