"""dyno_udp end to end: a synthetic JETDRIVE provider -> DynoUdpSource -> Redis -> writer -> PostgreSQL.

The provider is SYNTHETIC (tests/producers/jetdrive_peer.py, built from the spec; no public capture
exists). Two transports: unicast on 127.0.0.1, and real multicast to 224.0.2.10 inside a network
namespace this test creates (sockets are created in the namespace from a helper thread that joins
it with setns(2); Redis and PostgreSQL stay reachable in the main namespace). Nothing is ever sent
to a non-loopback address outside that namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest
from redis import Redis

from common.schema import Frame, Priority, decode
from common.settings import Settings
from producers.base import ProducerStats
from producers.dyno_udp import TIME_SOURCE, DynoUdpSource, open_socket
from tests.helpers import pg_query, running_producer, running_writer, wait_for
from tests.producers.jetdrive_peer import JetDrivePeer

pytestmark = pytest.mark.integration

GROUP, PORT = "224.0.2.10", 22344
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _frames(redis: Redis, settings: Settings) -> list[Frame]:
    entries = redis.xrange(settings.redis.names.stream(Priority.NORMAL))
    return [decode(fields) for _id, fields in entries]  # type: ignore[arg-type]


@contextmanager
def producing(source: DynoUdpSource, redis: Redis, settings: Settings) -> Iterator[ProducerStats]:
    with running_producer(source, redis, settings, "dyno_udp@test", read_timeout=0.05) as run:
        yield run.stats


def _drive(peer: JetDrivePeer, until: Callable[[], object], timeout: float = 10.0) -> None:
    """Send a value set every 20 ms (provider clock) until ``until()`` holds."""
    n = 0

    def step() -> object:
        nonlocal n
        n += 1
        ts = peer.clock_ms()
        peer.send_values([(1, ts, 2000.0 + n), (2, ts, 80.5), (3, ts, 17.25)])
        return until()

    wait_for(step, timeout, interval=0.02, what="ping-synced frames")


def test_unicast_end_to_end_into_postgres(settings: Settings, redis: Redis) -> None:
    source = DynoUdpSource("127.0.0.1", 0, ping_interval_ms=200)
    source.open()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    peer = JetDrivePeer(sock, ("127.0.0.1", source.bound_port))
    peer.start_serving()
    try:
        with running_writer(settings), producing(source, redis, settings):
            _drive(peer, lambda: any(_time_source(f) == "ping" for f in _frames(redis, settings)))
            rows = wait_for(
                lambda: pg_query(
                    settings,
                    "SELECT channel, unit, value, device FROM readings WHERE channel = 'Torque' LIMIT 1",
                ),
                20,
                what="Torque rows in PostgreSQL",
            )
            assert rows[0][1:] == ("N*m", 80.5, "power-core-cpu")
            query = "SELECT count(*) FROM readings WHERE channel = %s AND text_value = 'ping'"
            wait_for(lambda: pg_query(settings, query, [TIME_SOURCE])[0][0] > 0, 20, what="ping-timed rows")
    finally:
        peer.close()
        source.close()
    assert source.decoder.stats["pongs"] >= 1
    assert source.decoder.stats["lost_messages"] == 0


# ---- real multicast inside a network namespace ---------------------------------------------------
@contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh netns with lo up and a multicast route on lo; removed afterwards.

    Skipped (even under CI=true) only when the machine does not let us create one (no root or no
    CAP_SYS_ADMIN in a container, no iproute2): that is a limit of the machine, not a project bug.
    Any failure after the namespace exists is a failure.
    """
    name = "tdyno" + uuid.uuid4().hex[:8]
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("iproute2 ('ip') is not installed: cannot create a network namespace")
    if made.returncode != 0:
        pytest.skip(f"network namespaces not permitted here: {made.stderr.strip()}")
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"]):
            subprocess.run(["ip", "netns", "exec", name, "ip", *cmd], check=True, timeout=10)
        route = ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]
        subprocess.run(["ip", "netns", "exec", name, *route], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def in_namespace(name: str, make: Callable[[], T]) -> T:
    """Call ``make`` in a short-lived thread that joined netns ``name``: sockets it creates live there."""
    result: dict[str, T] = {}
    error: list[BaseException] = []

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            result["value"] = make()
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    if error:
        raise error[0]
    return result["value"]


def test_multicast_in_network_namespace(settings: Settings, redis: Redis) -> None:
    with network_namespace() as ns:
        factory = lambda: in_namespace(ns, lambda: open_socket(GROUP, PORT))  # noqa: E731
        source = DynoUdpSource(GROUP, PORT, socket_factory=factory, ping_interval_ms=200)
        second = DynoUdpSource(GROUP, PORT, socket_factory=factory)  # SO_REUSEADDR: a second node
        second.open()
        peer = JetDrivePeer(in_namespace(ns, lambda: open_socket(GROUP, PORT)), (GROUP, PORT))
        peer.start_serving()
        try:
            with producing(source, redis, settings):
                _drive(peer, lambda: any(_time_source(f) == "ping" for f in _frames(redis, settings)))
            frames = _frames(redis, settings)
            got_second = [f for _ in range(20) for f in second.read(0.05) if isinstance(f, Frame)]
        finally:
            peer.close()
            second.close()
    names = {c.name for f in frames for c in f.channels}
    assert {"Engine RPM", "Torque", "Power", TIME_SOURCE} <= names
    assert {f.device for f in frames} == {"power-core-cpu"}
    assert got_second, "the second listener on the same group and port received nothing"
    assert source.decoder.stats["pongs"] >= 1


def _time_source(frame: Frame) -> object:
    return next((c.value for c in frame.channels if c.name == TIME_SOURCE), None)
