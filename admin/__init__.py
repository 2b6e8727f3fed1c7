"""Operator verbs of ``telemetry-admin`` added for issue 19 (tap, validate); see each module."""
