"""Operator commands of ``telemetry-admin`` that live outside the writer (runs: admin/run_cli.py)."""
