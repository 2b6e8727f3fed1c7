"""scales end to end: real captures replayed on a pty and a socket:// server -> ScalesSource -> Redis -> writer -> PG.

Three scales in one producer: the QHW indicator capture on a pseudo-terminal, the "spun" capture
(with its ``00 00 7F 7F`` noise prefix) from a TCP serial server, and SYNTHETIC Toledo continuous
frames (an overload and a normal frame, see tests/producers/test_scales.py) on a second pty.
Expected counts come from the hexdumps (see the unit tests), not from the parser.
"""

from __future__ import annotations

import os
import pty
import threading
import tty
from pathlib import Path

import pytest
from redis import Redis

from common.schema import Priority, decode
from common.settings import Settings
from producers.scales import ScalesSource, parse_config
from tests.helpers import count_readings, pg_query, running_producer, running_writer, wait_for
from tests.integration.test_afr_serial import serve_once
from tests.producers.test_scales import TOLEDO_KG_CKS, TOLEDO_OVERLOAD

pytestmark = pytest.mark.integration

QHW_FRAMES, SPUN_FRAMES = 829, 1690


def test_scales_through_redis_and_writer_into_postgres(settings: Settings, redis: Redis, shared_data: Path) -> None:
    qhw = (shared_data / "scales" / "qhw-indicator_ST-GS.bin").read_bytes()
    spun = (shared_data / "scales" / "spun-weight-scale.bin").read_bytes()
    go = threading.Event()
    server, clients = serve_once(spun, go)
    (m_qhw, s_qhw), (m_tol, s_tol) = pty.openpty(), pty.openpty()
    for fd in (s_qhw, s_tol):
        tty.setraw(fd)
    config = parse_config(
        (
            '{"scales": ['
            f'{{"device": "qhw-1", "url": "{os.ttyname(s_qhw)}", "format": "qhw"}},'
            f'{{"device": "spun-1", "url": "socket://127.0.0.1:{server.getsockname()[1]}", "format": "ohaus"}},'
            f'{{"device": "toledo-1", "url": "{os.ttyname(s_tol)}", "format": "toledo"}}]}}'
        ).encode()
    )
    source = ScalesSource(config, open_workers=3)
    expected_frames = 3 + QHW_FRAMES + SPUN_FRAMES + 2  # 3 "connected" frames
    try:
        with running_producer(
            source, redis, settings, "scales@test", settings.producer.ranges, read_timeout=0.05
        ) as run:
            wait_for(lambda: source.stats["connects"] == 3, 10, what="3 scales connected")
            go.set()  # pyserial discards what arrives before open() ends: send only now
            os.write(m_tol, TOLEDO_OVERLOAD + TOLEDO_KG_CKS[:-1])  # configured without checksum: drop it
            view = memoryview(qhw)
            while view:  # a pty write may be partial
                view = view[os.write(m_qhw, view[:512]) :]
            wait_for(
                lambda: run.stats.frames_published >= expected_frames,
                20,
                what=f"{expected_frames} frames (published {run.stats.frames_published}, {source.stats})",
            )
    finally:
        server.close()
        for fd in (m_qhw, s_qhw, m_tol, s_tol, *(c.detach() for c in clients)):
            os.close(fd)
    stats = run.stats
    assert stats.frames_published == expected_frames
    assert dict(stats.parse_errors) == {"noise": 1}
    critical = [decode(f, Priority.CRITICAL) for _, f in redis.xrange(settings.redis.names.stream(Priority.CRITICAL))]
    assert [(f.device, f.channels[0].value) for f in critical] == [("toledo-1", None)]

    rows = 3 + 4 * (QHW_FRAMES + SPUN_FRAMES) + 4 + 5  # Toledo: overload (4), normal with tare (5)
    with running_writer(settings):
        wait_for(lambda: count_readings(settings) == rows, 40, what=f"{rows} readings")
    counts = dict(
        pg_query(
            settings,
            "SELECT device || ':' || channel || ':' || coalesce(value::text, 'null'), count(*) FROM readings"
            " WHERE channel IN ('stable', 'overload') OR (channel = 'weight' AND device = 'toledo-1')"
            " GROUP BY 1",
        )
    )
    assert counts["qhw-1:stable:0"] == 4 and counts["qhw-1:stable:1"] == QHW_FRAMES - 4
    assert counts["spun-1:stable:0"] == 997
    assert counts["toledo-1:overload:1"] == 1 and counts["toledo-1:weight:null"] == 1
    assert counts["toledo-1:weight:12.34"] == 1
    state = {
        (d, c): (v, u, q)
        for d, c, v, u, q in pg_query(settings, "SELECT device, channel, value, unit, quality FROM current_state")
    }
    assert state[("qhw-1", "weight")] == (245.5, "g", "good")
    assert state[("spun-1", "weight")] == (20.0, "kg", "good")
    assert state[("spun-1", "stable")] == (0.0, "", "good")
    assert state[("toledo-1", "tare")] == (0.0, "kg", "good")
