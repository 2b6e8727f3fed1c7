"""Fixtures of the integration tier shared by several files (private servers)."""

from tests.integration.servers import redis_server_factory

__all__ = ["redis_server_factory"]
