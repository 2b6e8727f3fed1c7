"""The operations endpoint every long-running process serves, in a daemon thread.

``GET /metrics`` (Prometheus text), ``/healthz`` (liveness: the process answers and its main
loop is alive), ``/readyz`` (readiness: what the process depends on is connected and no
breaker is open; 503 with the failing checks otherwise) and, where the process has one,
``/summary`` (JSON per-operation statistics). Binds 127.0.0.1 unless told otherwise. It never
stops ingest: a port in use is logged and the process runs without the endpoint.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from common.metrics import BreakerProbe, breaker_state_name, no_breakers
from common.settings import HttpSettings

logger = logging.getLogger(__name__)

WRITER_PORT = 9108
"""Default port of ``telemetry-write``."""
PRODUCER_PORT = 9109
"""Default port of ``telemetry-produce``; give each producer on one host its own (TELEMETRY_HTTP__PORT)."""


@dataclass
class Readiness:
    """The answer of /readyz: ``ok`` and the individual checks (name -> passed) behind it."""

    checks: dict[str, bool] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def readiness(connected: Mapping[str, bool], breakers: BreakerProbe = no_breakers) -> Readiness:
    """Ready when every dependency in ``connected`` is up and every breaker is closed.

    ``breakers`` is the plug for circuit breakers (common.breaker): link -> state.
    """
    result = Readiness(checks=dict(connected))
    try:
        states = {link: breaker_state_name(s) for link, s in breakers().items()}
    except Exception as exc:  # a broken probe must answer "not ready", not crash the endpoint
        result.checks["breakers"] = False
        result.detail["breakers"] = f"probe failed: {exc}"
        return result
    for link, state in states.items():
        result.checks[f"breaker_{link}_closed"] = state == "closed"
    result.detail["breakers"] = states
    return result


@dataclass
class Endpoints:
    """What one process serves; ``summary`` is optional (the writer's database summary)."""

    registry: CollectorRegistry
    live: Callable[[], bool]
    ready: Callable[[], Readiness]
    summary: Callable[[], dict[str, Any]] | None = None


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "telemetry-ops"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, generate_latest(endpoints.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    alive = endpoints.live()
                    self._json(200 if alive else 503, {"alive": alive})
                elif path == "/readyz":
                    r = endpoints.ready()
                    self._json(200 if r.ok else 503, {"ready": r.ok, "checks": r.checks, **r.detail})
                elif path in ("/summary", "/db") and endpoints.summary is not None:
                    self._json(200, endpoints.summary())
                else:
                    paths = ["/metrics", "/healthz", "/readyz"] + (["/summary"] if endpoints.summary else [])
                    self._json(404, {"error": "not found", "paths": paths})
            except Exception as exc:
                logger.exception("ops endpoint %s failed", path)
                self._json(500, {"error": type(exc).__name__})

        def _json(self, status: int, body: object) -> None:
            self._send(status, json.dumps(body, default=str).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("ops %s " + format, self.address_string(), *args)

    return Handler


class OpsServer:
    """A ThreadingHTTPServer in a daemon thread; ``port`` is the bound port (useful with 0)."""

    def __init__(self, host: str, port: int, endpoints: Endpoints) -> None:
        self.httpd = ThreadingHTTPServer((host, port), _handler(endpoints))
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ops-http", daemon=True)

    def start(self) -> OpsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(settings: HttpSettings, default_port: int, endpoints: Endpoints) -> OpsServer | None:
    """Start the endpoint per ``settings``; None when disabled or the port cannot be bound."""
    if not settings.enabled:
        return None
    port = default_port if settings.port is None else settings.port
    try:
        server = OpsServer(settings.host, port, endpoints).start()
    except OSError as exc:
        logger.warning("ops endpoint not started on %s:%d (%s); running without it", settings.host, port, exc)
        return None
    logger.info("ops endpoint on http://%s:%d (/metrics /healthz /readyz)", settings.host, server.port)
    return server


def check(path: str = "/healthz", timeout: float = 2.0) -> bool:
    """GET ``path`` on this host's endpoint (TELEMETRY_HTTP__PORT, default the writer's); True on 200."""
    import os
    import urllib.request
    from urllib.error import URLError

    port = int(os.environ.get("TELEMETRY_HTTP__PORT") or WRITER_PORT)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return int(resp.status) == 200
    except (URLError, OSError):
        return False


if __name__ == "__main__":
    # ``python -m common.http [/healthz|/readyz]``: the Docker HEALTHCHECK (exit 0 = healthy).
    import sys

    sys.exit(0 if check(sys.argv[1] if len(sys.argv) > 1 else "/healthz") else 1)
