"""Run inside a fresh network namespace with a ``vcan0`` interface (tests/integration/test_can_vcan.py):
the can source on SocketCAN ``vcan0``, a second SocketCAN socket sending real RAV4 SPEED frames, the
interface taken down and up again in the middle. Prints one JSON line with what the source produced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import can

from common.schema import Frame
from common.settings import CanSettings, Settings
from producers.can import from_settings


def main(data: Path) -> None:
    lines = [line for line in (data / "comma2k19_rav4_2017_seg40_first10s.candump.log").read_text().splitlines()]
    speeds = [bytes.fromhex(line.split("#")[1]) for line in lines if " can0 0B4#" in line][:20]
    cfg = CanSettings(
        interface="socketcan",
        channel="vcan0",
        dbc={"*": [data / "toyota_new_mc_pt_generated.dbc"]},
        checksum={"*": "toyota"},
    )
    source = from_settings(Settings(can=cfg, _env_file=None))  # type: ignore[call-arg]
    source.open()
    sender = can.Bus(interface="socketcan", channel="vcan0")
    frames: list[Frame] = []
    errors: list[str] = []
    lost = 0
    try:
        for i, data_bytes in enumerate(speeds):
            sender.send(can.Message(arbitration_id=0xB4, is_extended_id=False, data=data_bytes))
            for item in source.read(0.05):
                (frames.append(item) if isinstance(item, Frame) else errors.append(item.kind))
            if i == 9:
                subprocess.run(["ip", "link", "set", "vcan0", "down"], check=True)
                try:
                    source.read(0.2)
                except Exception as exc:  # SourceUnavailableError expected
                    lost += 1
                    errors.append(type(exc).__name__)
                source.close()
                subprocess.run(["ip", "link", "set", "vcan0", "up"], check=True)
                sender.shutdown()
                sender = can.Bus(interface="socketcan", channel="vcan0")
                source.open()
    finally:
        sender.shutdown()
        source.close()
    speed = [c.value for f in frames for c in f.channels if c.name == "SPEED.SPEED"]
    print(json.dumps({"speed": speed, "errors": errors, "lost": lost, "devices": sorted({f.device for f in frames})}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
