"""The can source on a real SocketCAN interface: ``vcan0`` in a network namespace this test creates
(``unshare -n``), so the host's interfaces are untouched. Runs only where the kernel offers ``vcan``
(module loaded or loadable); elsewhere it is skipped with the reason, CI included: vcan is a kernel
module a container cannot load, and the virtual-bus test (test_can.py) covers the producer path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cantools
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def vcan_available() -> str | None:
    """None if a vcan interface can be created in a new network namespace, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (iproute2) not installed"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "add", "dev", "vcan0", "type", "vcan"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"no SocketCAN vcan here: {probe.stderr.strip()[:200]} (modprobe vcan on the host)"
    return None


def test_socketcan_vcan_frames_and_interface_down_up(shared_data: Path) -> None:
    why = vcan_available()
    if why is not None:
        pytest.skip(why)
    data = shared_data / "can"
    script = (
        "ip link add dev vcan0 type vcan && ip link set up vcan0 && "
        f"{sys.executable} -m tests.integration.vcan_peer {data}"
    )
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    lines = (data / "comma2k19_rav4_2017_seg40_first10s.candump.log").read_text().splitlines()
    sent = [bytes.fromhex(line.split("#")[1]) for line in lines if " can0 0B4#" in line][:20]
    pt = cantools.database.load_file(str(data / "toyota_new_mc_pt_generated.dbc"), strict=False)
    want = [pt.decode_message(0xB4, d)["SPEED"] for d in sent]
    assert result["devices"] == ["vcan0"]
    assert result["lost"] == 1 and "SourceUnavailableError" in result["errors"]
    assert result["speed"] == want  # every frame before and after the interface went down and up
