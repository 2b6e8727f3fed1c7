"""A synthetic JETDRIVE provider for tests, built from the specification (no public capture exists).

It sends ChannelInfo / ChannelValues / ClearChannelInfo, answers Ping with Pong and
RequestChannelInfo with ChannelInfo, like a Dynojet Power Core would per the spec. Its clock is
"milliseconds since this object was created" (``clock_ms``), which a test can shift with ``skew_ms``.
Only ever bound to and sending to loopback or an address inside a test network namespace.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from producers.dyno_udp import wire

POWER_CORE = 0x43FD
CHANNELS = [(1, "Engine RPM", 8), (2, "Torque", 5), (3, "Power", 4), (4, "Humidity", 16)]


class JetDrivePeer:
    def __init__(
        self,
        sock: socket.socket,
        target: tuple[str, int],
        host: int = POWER_CORE,
        name: str = "Power Core CPU",
        channels: list[tuple[int, str, int]] | None = None,
        answer_pings: bool = True,
        skew_ms: int = 0,
    ) -> None:
        self.sock = sock
        self.target = target
        self.host = host
        self.name = name
        self.channels = channels if channels is not None else list(CHANNELS)
        self.answer_pings = answer_pings
        self.skew_ms = skew_ms
        self.seq = 0
        self.start = time.monotonic()
        self.received: list[wire.Message] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def clock_ms(self) -> int:
        return int((time.monotonic() - self.start) * 1000) + self.skew_ms

    def send(self, key: int, value: bytes = b"", destination: int = wire.ALL_HOSTS, seq: int | None = None) -> None:
        with self._lock:  # the serving thread and the test both send
            self.seq = (self.seq + 1) & 0xFF if seq is None else seq
            self.sock.sendto(wire.build_message(key, self.host, self.seq, destination, value), self.target)

    def send_info(self) -> None:
        self.send(wire.Key.CHANNEL_INFO, wire.build_channel_info(self.name, self.channels))

    def send_values(self, samples: list[tuple[int, int, float]]) -> None:
        self.send(wire.Key.CHANNEL_VALUES, wire.build_channel_values(samples))

    def serve_once(self, timeout: float = 0.0) -> None:
        """Answer what arrived (Ping -> Pong, RequestChannelInfo -> ChannelInfo)."""
        while select.select([self.sock], [], [], timeout)[0]:
            timeout = 0.0
            data, _addr = self.sock.recvfrom(65535)
            messages, _ = wire.split_datagram(data)
            for msg in messages:
                if msg.host == self.host or msg.destination not in (self.host, wire.ALL_HOSTS):
                    continue
                self.received.append(msg)
                if msg.key == wire.Key.PING and self.answer_pings:
                    self.send(wire.Key.PONG, wire.build_pong(msg.value, self.clock_ms()), msg.host)
                elif msg.key == wire.Key.REQUEST_CHANNEL_INFO:
                    self.send_info()

    def start_serving(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.serve_once(0.05)

        self._thread = threading.Thread(target=loop, name="jetdrive-peer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.sock.close()
