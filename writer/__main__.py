"""``python -m writer`` runs ``telemetry-write``."""

import sys

from writer.cli import main

sys.exit(main())
