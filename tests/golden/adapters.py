"""Per-source golden adapters: a case's input -> the Frames and ParseErrors that source produces.

Each adapter drives the source's own parsing path (the classes the source uses; pynmea2 and
python-OBD's decoders run for real) with deterministic chunks and the injected ``StepClock``.
What is replaced is only the transport: the serial port (``ReplayPort``), the UDP socket (datagrams
fed to the decoder), the ELM327 link (``TranscriptConnection`` answering from a request -> response
transcript through python-OBD's own protocol parser and command decoders).

Adding a case needs no code. Adding a source needs one adapter registered in ``ADAPTERS``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ParseError
from common.schema import Frame, Priority
from common.settings import AfrSerialSettings, DynoUdpSettings
from tests.golden.cases import T0, Case, StepClock

Item = Frame | ParseError
Run = Callable[[Case, Path], list[Item]]


@dataclass(frozen=True)
class Adapter:
    run: Run
    volatile: frozenset[str] = frozenset()
    """Projection fields this source cannot make deterministic (dropped from expected.jsonl)."""


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class ReplayPort:
    """A pyserial port stand-in: ``pending`` is what the next read returns (one chunk per source read)."""

    def __init__(self) -> None:
        self.pending = b""
        self.timeout: float | None = 0

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def read(self, size: int = 1) -> bytes:
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def close(self) -> None:
        pass


# --- gps_nmea ------------------------------------------------------------------------------------


def run_gps(case: Case, shared_data: Path) -> list[Item]:
    """NmeaDecoder (framing, pynmea2, epochs) fed ``chunk`` bytes at a time, flushed at the end.

    Settings: ``device`` ("gps"), ``strict_checksum`` (false), ``min_date`` (2000-01-01: these
    2005-2025 captures predate the producer's default floor, which would roll them forward).
    gpsd's ``#`` comment lines are removed first (a receiver never sends them).
    """
    from producers.gps_nmea import NmeaDecoder

    s = case.settings
    raw = case.input_bytes(shared_data)
    data = b"".join(line + b"\n" for line in raw.split(b"\n")[:-1] if not line.startswith(b"#"))
    decoder = NmeaDecoder(
        s.get("device", "gps"), s.get("strict_checksum", False), dt.date.fromisoformat(s.get("min_date", "2000-01-01"))
    )
    clock, out = StepClock(), list[Item]()
    for piece in chunks(data, case.chunk or 64):
        clock.tick()
        out += decoder.feed(piece, clock.now(), clock.monotonic_ns())
    return out + decoder.flush()


# --- scales --------------------------------------------------------------------------------------


def run_scales(case: Case, shared_data: Path) -> list[Item]:
    """ScalesSource's per-scale read path (framer, parser, guards, suppression) on a ReplayPort.

    Settings: the scale's entry of the scales config file (``format``, ``checksum``, ``width``,
    ``pattern``, ``min_interval_s`` ...); ``device`` defaults to "scale".
    """
    import orjson

    from producers.scales import ScalesSource, parse_config

    entry = {"device": "scale", "url": "loop://", **case.settings}
    clock = StepClock()
    source = ScalesSource(parse_config(orjson.dumps({"scales": [entry]})), clock=clock)
    scale, port = source.scales[0], ReplayPort()
    scale.port, scale.framer = port, scale.new_framer()
    out: list[Item] = []
    for piece in chunks(case.input_bytes(shared_data), case.chunk or 64):
        clock.tick()
        port.pending = piece
        source._read_scale(scale, out)
    return out


# --- afr_serial ----------------------------------------------------------------------------------


def run_afr(case: Case, shared_data: Path) -> list[Item]:
    """AfrSerialSource.read on a ReplayPort: one chunk per read, then a quiet read (held packet judged).

    Settings: AfrSerialSettings fields (``device`` "mts", ``lambda_names``, ``aux``).
    """
    from producers.afr_serial import AfrSerialSource

    settings = AfrSerialSettings(**{"device": "mts", **case.settings})
    clock = StepClock()
    source, port = AfrSerialSource(settings, clock), ReplayPort()
    source._port = port
    out: list[Item] = []
    for piece in [*chunks(case.input_bytes(shared_data), case.chunk or 64), b""]:
        clock.tick()
        port.pending = piece
        out += source.read(0)
    return out


# --- obd -----------------------------------------------------------------------------------------


class TranscriptConnection:
    """Stands in for ``obd.OBD``: answers each request from the transcript, in order, via python-OBD.

    Transcript lines: ``REQUEST > RESPONSE_LINE [RESPONSE_LINE ...]`` (``#`` comments). A request's
    answers are used in order; asking once more than the transcript answers is an error. The answer
    lines go through python-OBD's CAN 11/500 protocol parser and the command's own decoder, exactly
    what ``obd.OBD.query`` does with what the adapter sends back.
    """

    def __init__(self, text: str) -> None:
        import obd

        self.obd: Any = obd
        self.answers: dict[bytes, list[list[str]]] = {}
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                request, _, response = line.partition(">")
                self.answers.setdefault(request.strip().encode(), []).append(response.split())

    def status(self) -> str:
        return str(self.obd.OBDStatus.CAR_CONNECTED)

    def protocol_id(self) -> str:
        return "6"

    def query(self, cmd: Any, force: bool = False) -> Any:
        queue = self.answers.get(cmd.command)
        if not queue:
            raise AssertionError(f"transcript has no (more) answers to {cmd.command!r} ({cmd.name})")
        lines = queue.pop(0)
        messages = self.obd.protocols.ISO_15765_4_11bit_500k([])(lines)
        return cmd(messages)

    def close(self) -> None:
        pass


def run_obd(case: Case, shared_data: Path) -> list[Item]:
    """ObdSource over a TranscriptConnection: ``rounds`` reads, every PID due each round (interval 0).

    Settings: ``pids`` (list of python-OBD command names, polled in order), ``rounds``, ``device`` ("obd").
    """
    from producers.obd import ObdSource

    s = case.settings
    conn = TranscriptConnection(case.input_bytes(shared_data).decode())
    clock = StepClock(step_ms=100)
    source = ObdSource(lambda: conn, dict.fromkeys(s["pids"], 0.0), s.get("device", "obd"), clock=clock)
    out: list[Item] = []
    for _ in range(s["rounds"]):
        clock.tick()
        out += source.read(0)
    return out


# --- dyno_udp ------------------------------------------------------------------------------------


def run_dyno(case: Case, shared_data: Path) -> list[Item]:
    """JetDriveDecoder (the source's pure part) fed one datagram per read, then flushed, as ``read`` does.

    Input lines: ``T_MS HOST:PORT HEX`` (receive time in ms since T0, sender, datagram). Settings:
    ``host_id`` (our id, default 0x1234), ``ping_interval_ms``, ``hold_max``, ``hold_ms``; aliases are
    the settings' defaults.
    """
    from producers.dyno_udp import JetDriveDecoder

    s = dict(case.settings)
    decoder = JetDriveDecoder(s.pop("host_id", 0x1234), aliases=DynoUdpSettings().aliases, **s)
    out: list[Item] = []
    for raw in case.input_bytes(shared_data).decode().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        t_ms, sender, hexdata = line.split()
        host, port = sender.rsplit(":", 1)
        now, mono = T0 + dt.timedelta(milliseconds=int(t_ms)), int(t_ms) * 1_000_000
        out += decoder.feed(bytes.fromhex(hexdata), (host, int(port)), now, mono)
        out += decoder.flush(now, mono)
    return out


# --- jsonl, simulate, file_import ----------------------------------------------------------------


def run_jsonl(case: Case, shared_data: Path) -> list[Item]:
    """JsonlSource reading the case's input file (not followed) until exhausted."""
    from producers.jsonl import JsonlSource

    assert case.input is not None, "jsonl cases read an input file of the case folder"
    clock = StepClock()
    source = JsonlSource(str(case.folder / case.input), follow=False, clock=clock)
    return _drain(source, clock)


def run_simulate(case: Case, shared_data: Path) -> list[Item]:
    """SimulateSource flat out (rate 0) until ``count`` frames. Settings: devices, channels, count, priority."""
    from producers.simulate import SimulateSource

    s = case.settings
    clock = StepClock()
    source = SimulateSource(
        s.get("devices", 2), s.get("channels", 8), 0, s["count"], Priority(s.get("priority", "normal")), clock=clock
    )
    return _drain(source, clock, close=False)


def run_file_import(case: Case, shared_data: Path) -> list[Item]:
    """``iter_items`` (the import job's parser) on the file. Settings: the ColumnMapping fields.

    The import stamps rows with the import's wall and monotonic time, not injectable: ``rcv`` and
    ``mono`` are left out of the projection (``volatile``). Observed times come from the file.
    """
    from producers.file_import.job import ImportStats, iter_items
    from producers.file_import.mapping import ColumnMapping

    path = shared_data / case.capture if case.capture else case.folder / (case.input or "")
    stats = ImportStats(path.stat().st_size, "golden")
    return list(iter_items(path, ColumnMapping(**case.settings), stats))


def run_can(case: Case, shared_data: Path) -> list[Item]:
    """CanSource replaying the capture (candump) through python-can's reader and the DBC decoder,
    one message per read. Settings: ``dbc`` (bus -> DBC paths relative to ../shared/data), ``checksum``,
    ``dbc_strict``, ``min_interval_s``, ``deadband``, ``log_channels`` (buses replayed; an MF4's bus
    channel n is ``can{n}``). Log times are shifted to start at the clock's T0.
    """
    from producers.can.dbc import load_bus_dbcs
    from producers.can.decode import CanDecoder
    from producers.can.feeds import LogFeed
    from producers.can.source import CanSource
    from producers.can.throttle import Throttle

    s = case.settings
    assert case.capture is not None, "can cases replay a real capture"
    dbc = {bus: [shared_data / p for p in paths] for bus, paths in s.get("dbc", {}).items()}
    buses = load_bus_dbcs(dbc, s.get("checksum", {}), s.get("dbc_strict", False))
    throttle = Throttle(s.get("min_interval_s", {}), s.get("deadband", {}))
    clock = StepClock()
    decoder = CanDecoder(buses, throttle=throttle)
    feed = LogFeed(
        shared_data / case.capture,
        0.0,
        "shift",
        clock,
        start=T0,
        channels=s.get("log_channels", ()),
        counts=decoder.counts,
    )
    source = CanSource(feed, decoder, case.capture, clock)
    source.open()
    return _drain(source, clock)


def _drain(source: Any, clock: StepClock, close: bool = True) -> list[Item]:
    """Read ``source`` (one clock step per read, no waiting) until it is exhausted; then close it."""
    out: list[Item] = []
    try:
        while not source.exhausted:
            clock.tick()
            out += source.read(0)
    finally:
        if close:
            source.close()
    return out


ADAPTERS: dict[str, Adapter] = {
    "gps_nmea": Adapter(run_gps),
    "scales": Adapter(run_scales),
    "afr_serial": Adapter(run_afr),
    "obd": Adapter(run_obd),
    "dyno_udp": Adapter(run_dyno),
    "jsonl": Adapter(run_jsonl),
    "simulate": Adapter(run_simulate),
    "file_import": Adapter(run_file_import, volatile=frozenset(["rcv", "mono"])),
    "can": Adapter(run_can),
}
"""Source name -> adapter. The golden folder ``tests/golden/<source>/`` uses the same name."""


def produce(case: Case, shared_data: Path) -> Sequence[Item]:
    return ADAPTERS[case.source].run(case, shared_data)
