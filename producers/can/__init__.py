"""can: CAN bus messages decoded with DBC files (python-can + cantools, the optional extra ``can``).

A live bus through any python-can interface (SocketCAN, PCAN, Kvaser, slcan, virtual), or a log
file (candump, ASC, BLF, ASAM MDF4 ...) replayed in real time or as fast as possible. One frame per decoded
message (see producers/can/decode.py); OBD-II ISO-TP answers (VIN, trouble codes) reassembled;
J1939 messages matched by PGN; Toyota checksums verified; per-message minimum interval and
deadband suppression. Modules: ``dbc`` (lookup), ``integrity`` (checksums, counters), ``isotp``,
``throttle``, ``mapping`` (the mapping file), ``decode`` (the pure core), ``feeds`` (python-can
I/O), ``source`` (the run loop's Source). See README "CAN bus". Importing this package loads
neither python-can nor cantools: they are imported when the source is built or the bus opened.
"""

from __future__ import annotations

from common.settings import Settings
from producers.can.dbc import load_bus_dbcs
from producers.can.decode import CanDecoder
from producers.can.feeds import BusFeed, LogFeed
from producers.can.mapping import load_mapping
from producers.can.source import CanSource, Feed
from producers.can.throttle import Throttle
from producers.source_spec import SourceSpec

__all__ = ["SPEC", "CanSource", "from_settings"]


def from_settings(s: Settings) -> CanSource:
    """The source ``telemetry-produce can`` runs, from the ``TELEMETRY_CAN__*`` settings."""
    from common.clock import SystemClock

    cfg = s.can
    buses = load_bus_dbcs(cfg.dbc, cfg.checksum, cfg.dbc_strict)
    throttle = Throttle(cfg.min_interval_s, cfg.deadband, cfg.max_silence_s)
    decoder = CanDecoder(buses, load_mapping(cfg.mapping), cfg.only_mapped, throttle, cfg.isotp_obd, cfg.device)
    clock = SystemClock()
    feed: Feed
    if cfg.log_file is not None:
        feed = LogFeed(
            cfg.log_file,
            cfg.replay_speed,
            cfg.log_time,
            clock,
            cfg.channel,
            cfg.replay_start,
            cfg.log_channels,
            decoder.counts,
        )
        device = cfg.device or cfg.log_file.name
    else:
        feed = BusFeed(cfg.interface, cfg.channel, cfg.bitrate)
        device = cfg.device or cfg.channel
    return CanSource(feed, decoder, device, clock)


SPEC = SourceSpec(
    "can", "can", from_settings, "CAN bus or CAN log replay, decoded with DBC files (python-can, cantools)"
)
