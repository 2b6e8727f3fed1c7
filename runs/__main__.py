"""``python -m runs``: the run detector, as ``telemetry-runs``."""

import sys

from runs.cli import main

sys.exit(main())
