"""The consumer-group writer: Redis Streams -> PostgreSQL COPY, ack after commit, dead letters."""
