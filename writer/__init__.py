"""The consumer-group writer: Redis Streams -> PostgreSQL COPY, ack after commit, dead letters.

Only the write path and what it needs at run time (its metrics, partitions, retention, dead
letters, stream IDs and status for /metrics) and the SQL migrations; the operator's tools are in
``admin/``. Imports only ``common``.
"""
