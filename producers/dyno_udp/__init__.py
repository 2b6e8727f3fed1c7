"""dyno_udp: Dynojet JETDRIVE (KLHDV over UDP multicast) -> one frame per provider and provider timestamp.

Layout: ``wire`` (pure KLHDV framing and payloads), ``decoder`` (pure per-provider state: channel maps,
Ping/Pong clock offsets, held values, sequence loss), and ``DynoUdpSource`` below (the socket).

* The socket binds the group and port with SO_REUSEADDR (several JETDRIVE nodes may share one PC)
  and joins the group on ``interface`` (0.0.0.0 = the kernel's choice by route). A non-multicast
  ``group`` (e.g. 127.0.0.1) binds that unicast address instead, for tests and point-to-point links.
* We transmit (Ping, Pong, RequestChannelInfo) as host ``host_id`` (random when 0; the spec's
  id negotiation is not done: a collision is unlikely among a handful of nodes and shows as
  ``own`` messages we did not send). Multicast replies go to the group, as the reference does;
  in unicast mode they go back to the datagram's sender.
* Values are the exact float32 of the wire, in its SI units (``wire.UNITS``); channel names are the
  provider's, except where the alias table (``TELEMETRY_DYNO_UDP__ALIASES``; defaults for Dynojet's
  ``Engine RPM``, ``Torque`` in N*m, ``Power`` in kW) names the canonical channel (``rpm``,
  ``torque``, ``horsepower``) whose range the validator checks after converting the unit.
* Counts: ``source.decoder.stats`` (``lost_messages``, ``out_of_order``, ``held_dropped``, ``pongs``
  ...) and ``send_errors``, exported by ``counters()`` to /metrics; losses and dropped values are
  also returned as ParseErrors (kinds ``seq_gap``,
  ``unknown_channel``) so the run loop counts them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
from collections.abc import Callable, Mapping, Sequence

from common.clock import Clock, SystemClock
from common.errors import ParseError, SourceUnavailableError
from common.schema import Frame
from common.settings import JetDriveAlias, Settings
from producers.dyno_udp.decoder import TIME_SOURCE, JetDriveDecoder
from producers.source_spec import SourceSpec

__all__ = ["SPEC", "TIME_SOURCE", "DynoUdpSource", "JetDriveDecoder", "from_settings", "open_socket"]

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65_535
MAX_BATCH = 2000
"""Datagrams decoded per ``read`` at most, so one call stays short under a flood."""


def is_multicast(group: str) -> bool:
    return ipaddress.IPv4Address(group).is_multicast


def open_socket(group: str, port: int, interface: str = "0.0.0.0") -> socket.socket:
    """A UDP socket bound to ``group:port`` (SO_REUSEADDR), member of the group if it is multicast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Binding the group address (not 0.0.0.0) on Linux keeps other traffic to this port out.
        sock.bind((group, port))
        if is_multicast(group):
            mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            if interface != "0.0.0.0":
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    except OSError:
        sock.close()
        raise
    return sock


class DynoUdpSource:
    """Listens to a JETDRIVE group; ``read`` returns frames and ParseErrors (never raises them)."""

    source = "dyno_udp"

    def __init__(
        self,
        group: str = "224.0.2.10",
        port: int = 22344,
        interface: str = "0.0.0.0",
        host_id: int = 0,
        clock: Clock | None = None,
        socket_factory: Callable[[], socket.socket] | None = None,
        aliases: Mapping[str, JetDriveAlias] | None = None,
        **decoder_options: int,
    ) -> None:
        self.group = group
        self.port = port
        self.interface = interface
        self.multicast = is_multicast(group)
        self.clock = clock or SystemClock()
        self.socket_factory = socket_factory or (lambda: open_socket(group, port, interface))
        host_id = host_id or 1 + int.from_bytes(os.urandom(2), "little") % 0xFFFE
        self.decoder = JetDriveDecoder(host_id, aliases=aliases, **decoder_options)
        self.send_errors = 0
        self._sock: socket.socket | None = None

    def counters(self) -> dict[tuple[str, str], int]:
        """("", event) -> count for /metrics: the decoder's ``stats`` and ``send_errors`` (source-wide)."""
        counts = {("", event): n for event, n in dict(self.decoder.stats).items()}
        counts["", "send_errors"] = self.send_errors
        return counts

    @property
    def bound_port(self) -> int:
        """The local port (useful when ``port`` was 0 in tests)."""
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def open(self) -> None:
        if self._sock is not None:
            return
        try:
            self._sock = self.socket_factory()
        except OSError as exc:
            raise SourceUnavailableError(f"cannot listen on {self.group}:{self.port}: {exc.strerror}") from None
        self._sock.setblocking(False)
        logger.info("dyno_udp: listening on %s:%d as host 0x%04x", self.group, self.port, self.decoder.host_id)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def exhausted(self) -> bool:
        return False

    def read(self, timeout: float) -> Sequence[Frame | ParseError]:
        if self._sock is None:
            self.open()
        assert self._sock is not None
        out: list[Frame | ParseError] = []
        try:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            for _ in range(MAX_BATCH if ready else 0):
                try:
                    data, addr = self._sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                out.extend(self.decoder.feed(data, addr, self.clock.now(), self.clock.monotonic_ns()))
        except OSError as exc:
            raise SourceUnavailableError(f"receive on {self.group}:{self.port} failed: {exc}") from None
        out.extend(self.decoder.flush(self.clock.now(), self.clock.monotonic_ns()))
        self._send_outbox()
        return out

    def _send_outbox(self) -> None:
        assert self._sock is not None
        for addr, datagram in self.decoder.outbox:
            target = (self.group, self.port) if self.multicast else addr
            try:
                self._sock.sendto(datagram, target)
            except OSError as exc:  # a reply we cannot send costs us clock sync, not data
                self.send_errors += 1
                logger.debug("dyno_udp: send to %s failed: %s", target, exc)
        self.decoder.outbox.clear()


def from_settings(s: Settings) -> DynoUdpSource:
    d = s.dyno_udp
    return DynoUdpSource(
        d.group,
        d.port,
        d.interface,
        host_id=d.host_id,
        ping_interval_ms=int(d.ping_interval_s * 1000),
        hold_max=d.hold_max,
        hold_ms=int(d.hold_s * 1000),
        aliases=d.aliases,
    )


SPEC = SourceSpec("dyno_udp", "dyno_udp", from_settings, "Dynojet JetDrive (KLHDV over UDP multicast)")
