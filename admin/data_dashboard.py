"""The Grafana dashboard over the PostgreSQL data, built from the SQL files in deploy/grafana/sql.

``python -m admin.data_dashboard`` rewrites deploy/grafana/dashboards/telemetry-data.json; each
panel's query is its SQL file's text verbatim, and tests/integration/test_data_dashboard.py
executes every file against PostgreSQL with pipeline data and checks the JSON still carries the
files' text: the dashboard cannot drift from the schema. No database access here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = REPO / "deploy" / "grafana" / "sql"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "telemetry-data.json"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "telemetry-pg"}

PANELS: list[tuple[str, str, str, dict[str, int]]] = [
    # (SQL file, panel type, title, grid position)
    (
        "current_state.sql",
        "table",
        "Current state per device (stale channels marked)",
        {"h": 10, "w": 24, "x": 0, "y": 0},
    ),
    ("channels_over_time.sql", "timeseries", "Chosen channels over time", {"h": 9, "w": 14, "x": 0, "y": 10}),
    ("gps_track.sql", "geomap", "GPS track", {"h": 9, "w": 10, "x": 14, "y": 10}),
    ("recent_runs.sql", "table", "Recent runs", {"h": 8, "w": 24, "x": 0, "y": 19}),
]
VARIABLES = [("device", "devices.sql"), ("channel", "channels.sql")]


def sql_text(name: str) -> str:
    return (SQL_DIR / name).read_text().strip()


def _panel(pid: int, file: str, kind: str, title: str, grid: dict[str, int]) -> dict[str, Any]:
    fmt = "time_series" if kind == "timeseries" else "table"
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": f"SQL: deploy/grafana/sql/{file}",
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [
            {"datasource": DATASOURCE, "refId": "A", "editorMode": "code", "format": fmt, "rawQuery": True,
             "rawSql": sql_text(file)}
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }  # fmt: skip
    if kind == "geomap":
        panel["options"] = {
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 2},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [
                {"type": "markers", "name": "Track", "tooltip": True,
                 "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                 "config": {"style": {"size": {"fixed": 3}, "color": {"fixed": "dark-green"}}}}
            ],
        }  # fmt: skip
    if file == "current_state.sql":
        colors = {"STALE": {"color": "red", "index": 0}, "fresh": {"color": "green", "index": 1}}
        stale = {"type": "value", "options": colors}
        panel["fieldConfig"]["overrides"] = [
            {"matcher": {"id": "byName", "options": "freshness"},
             "properties": [{"id": "mappings", "value": [stale]},
                            {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}
        ]  # fmt: skip
    return panel


def _variable(name: str, file: str) -> dict[str, Any]:
    return {
        "name": name, "label": name, "type": "query", "datasource": DATASOURCE, "query": sql_text(file),
        "definition": sql_text(file), "multi": True, "includeAll": True, "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }  # fmt: skip


def build() -> dict[str, Any]:
    return {
        "uid": "telemetry-data",
        "title": "Edge telemetry: data",
        "tags": ["telemetry"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "editable": True,
        "panels": [_panel(i, *spec) for i, spec in enumerate(PANELS, start=1)],
        "templating": {"list": [_variable(name, file) for name, file in VARIABLES]},
        "annotations": {"list": []},
    }


def main() -> int:
    DASHBOARD.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {DASHBOARD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
