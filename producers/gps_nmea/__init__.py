"""gps_nmea: NMEA 0183 GPS receivers on any pyserial URL (pyserial + pynmea2).

One module per concern, pure ones first:

* ``framing``   raw bytes -> sentence candidates, resynchronising on ``$`` (pure)
* ``sentences`` one sentence -> Update; rejected lines as ParseError kinds (pure)
* ``epochs``    Updates -> one Frame per fix epoch, dated by the receiver (pure)
* ``source``    NmeaDecoder (pure chain) and GpsNmeaSource (serial I/O)

Talkers GP GN GL GA GB BD; sentences GGA RMC GNS GLL VTG GSA GSV GST ZDA. Channels and units
are listed in ``sentences.CHANNEL_UNITS``. It does not decode proprietary sentences
(``$PGRM``, ``$PMTK``, ``$PUBX`` ...): they are skipped and counted as ``proprietary``.
"""

from __future__ import annotations

from common.settings import Settings
from producers.gps_nmea.source import GpsNmeaSource, NmeaDecoder
from producers.source_spec import SourceSpec

__all__ = ["SPEC", "GpsNmeaSource", "NmeaDecoder", "from_settings"]


def from_settings(s: Settings) -> GpsNmeaSource:
    """The source described by the ``TELEMETRY_GPS_NMEA__*`` settings."""
    g = s.gps_nmea
    return GpsNmeaSource(
        g.url,
        g.baudrate,
        g.device,
        strict_checksum=g.strict_checksum,
        min_date=g.min_date,
        epoch_idle_s=g.epoch_idle_s,
    )


SPEC = SourceSpec("gps_nmea", "gps_nmea", from_settings, "NMEA 0183 GPS receivers on any pyserial URL")
