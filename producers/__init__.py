"""Producers: one process per device or source, publishing frames to Redis Streams."""
