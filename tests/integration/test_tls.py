"""TLS to Redis and PostgreSQL, with a throwaway CA made by the test (openssl CLI).

Redis: a private redis-server with --tls-port; clients use ``rediss://`` URLs whose query names
the CA (``?ssl_ca_certs=/path/ca.crt``; ``ssl_certfile``/``ssl_keyfile`` for client certs).
PostgreSQL: a throwaway cluster (initdb, ssl=on) on a free port; clients use libpq parameters
in the DSN (``sslmode=verify-full sslrootcert=/path/ca.crt``). No code path differs from plain TCP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.redis_client import connect_redis
from common.settings import PostgresSettings, RedisSettings, Settings
from tests.conftest import unavailable
from tests.helpers import count_readings, running_writer, wait_for
from tests.integration.pipeline import produce_simulated
from tests.integration.servers import PgServer
from writer.pg import connect_pg

pytestmark = pytest.mark.integration


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) for 127.0.0.1/localhost, signed by a new CA."""
    if shutil.which("openssl") is None:
        unavailable("openssl CLI not installed")
    folder.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    crt, key, csr, ext = folder / "server.crt", folder / "server.key", folder / "server.csr", folder / "ext"
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", f"/CN={name}")
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "1", "-extfile", str(ext))  # fmt: skip
    return ca, crt, key


def test_redis_over_tls_end_to_end(settings: Settings, redis_server_factory: Any, tmp_path: Path) -> None:
    ca, crt, key = make_ca(tmp_path / "ca", "telemetry-test-ca")
    rogue, _, _ = make_ca(tmp_path / "rogue", "rogue-ca")
    tls = ("--tls-cert-file", str(crt), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca))
    server = redis_server_factory(*tls, "--tls-auth-clients", "no", tls=True)
    url = f"{server.url}?ssl_ca_certs={ca}"
    s = Settings(
        redis={"url": url, "namespace": settings.redis.namespace},
        postgres=settings.postgres.model_dump(),
        writer={"batch_max_age_ms": 50},
        _env_file=None,  # type: ignore[call-arg]
    )
    client = connect_redis(s.redis)
    assert client.ping()
    produce_simulated(s, client, 300, devices=1, channels=2)
    with running_writer(s):
        wait_for(lambda: count_readings(s) == 600, 30, what="readings through TLS")
    for bad in (server.url, f"{server.url}?ssl_ca_certs={rogue}", f"redis://127.0.0.1:{server.port}/0"):
        with pytest.raises(RedisConnectionError):
            connect_redis(RedisSettings(url=bad, connect_timeout=2, socket_timeout=2)).ping()


@pytest.fixture
def tls_postgres(tmp_path: Path, pg_server_factory: Callable[..., PgServer]) -> tuple[int, Path, Path]:
    """A throwaway PostgreSQL cluster with ssl=on; returns (port, ca.crt, rogue ca.crt)."""
    ca, crt, key = make_ca(tmp_path / "ca", "telemetry-test-ca")
    rogue, _, _ = make_ca(tmp_path / "rogue", "rogue-ca")

    def add_certificates(server: PgServer) -> None:
        for src, name in ((crt, "server.crt"), (key, "server.key")):
            shutil.copy(src, server.data / name)
            os.chmod(server.data / name, 0o600)
            if server.as_postgres:
                shutil.chown(server.data / name, "postgres")

    server = pg_server_factory("ssl=on", init=add_certificates)
    return server.port, ca, rogue


def test_postgres_over_tls_verifies_the_server(tls_postgres: tuple[int, Path, Path]) -> None:
    port, ca, rogue = tls_postgres
    base = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    with connect_pg(PostgresSettings(dsn=f"{base} sslmode=verify-full sslrootcert={ca}", schema_name="public")) as conn:
        ssl, version = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()  # type: ignore[misc]
        assert ssl is True and version.startswith("TLS")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect_pg(PostgresSettings(dsn=f"{base} sslmode=verify-full sslrootcert={rogue}"))
    with connect_pg(PostgresSettings(dsn=f"{base} sslmode=disable")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
