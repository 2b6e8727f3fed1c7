"""Runs and sessions (issue 17): a named span of some devices' readings, its summary, and the tools
around it (automatic detection from live frames, compare, plot, export, import of dyno exports)."""
