"""The producer's bounded on-disk spool: frames kept while Redis is down, replayed in order.

Only producers use it. ``store`` is the Spool (append with a priority drop policy, replay,
durability), ``scan`` loads and repairs a queue's segments at start, ``records`` is the segment
format (pure), ``state`` the small state file (identity, sequence, cursors). No Redis here.
"""

from producers.spool.records import pack_fields, unpack_fields
from producers.spool.store import Append, DropHook, Spool, SpoolRecord, open_spool

__all__ = ["Append", "DropHook", "Spool", "SpoolRecord", "open_spool", "pack_fields", "unpack_fields"]
