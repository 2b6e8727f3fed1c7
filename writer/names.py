"""Small integer ids of the names a packed reading refers to (issue 15, migration 004).

A packed row stores ids, not text: ``devices`` (source, device), ``series`` (device,
channel, unit), ``producers`` and ``sessions``. ``NameIds`` caches them per connection; ids
missing from the cache are fetched (and created when new) through the SECURITY DEFINER
functions ``series_ids`` and ``name_ids``, in a short transaction of their own before the
batch's: a batch that rolls back cannot leave the cache pointing at ids that do not exist.
Names are never deleted, so a cached id stays valid for the connection's life.

A device's layout (migration 011: its series in frame order, fixed once by ``device_layouts``)
is cached with its ids: a frame whose series are exactly its device's layout is stored with
series NULL. The layout proposed for a device that has none is the one most of the batch's
frames of that device carry (of equal counts, the one with more channels).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from common.schema import Frame, Shape, shape_of
from writer.pg_arrays import INT4_OID, fixed_array

Layout = tuple[str, str, tuple[str, ...], tuple[str, ...]]
"""(source, device, channel names, units): what a frame's series array depends on."""


def layout_of(frame: Frame, shape: Shape | None = None) -> Layout:
    """The key of a frame's (device id, series ids) in the cache. Pure. ``shape``: the frame's
    (common/schema.py ``decode_shaped``), taken from its channels when None."""
    names, units, _ = shape or shape_of(frame)[0]
    return (frame.source, frame.device, names, units)


@dataclass
class NameIds:
    """Ids known on one connection."""

    layouts: dict[Layout, tuple[int, bytes | None]] = field(default_factory=dict)
    """Layout -> (device id, its series ids as a binary int4[] (writer/pg_arrays.py), or None
    when they are the device's layout: the packed row's series column)."""
    device_layouts: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Device id -> its layout (series ids in frame order), for devices that have one."""
    series: dict[tuple[str, str, str, str], tuple[int, int]] = field(default_factory=dict)
    producers: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)

    def missing(self, frames: Sequence[Frame], layouts: Sequence[Layout]) -> tuple[set[Layout], set[str], set[str]]:
        """Layouts, producers and sessions of ``frames`` not in the cache. Pure."""
        lay = {k for k in layouts if k not in self.layouts}
        prods = {f.producer for f in frames if f.producer not in self.producers}
        sess = {f.session for f in frames if f.session is not None and f.session not in self.sessions}
        return lay, prods, sess


_CACHES: weakref.WeakKeyDictionary[psycopg.Connection[Any], NameIds] = weakref.WeakKeyDictionary()

MAX_NAMES_PER_CALL = 50_000
"""Names sent to one call of series_ids/name_ids (the functions refuse more than 100,000)."""


def name_ids(conn: psycopg.Connection[Any], frames: Sequence[Frame], layouts: Sequence[Layout]) -> NameIds:
    """The connection's cache, completed with the ids ``frames`` need (created when new).

    On a connection outside autocommit the ids would live in the caller's transaction, so
    they are looked up into a cache of this call only.
    """
    cache = _CACHES.get(conn) if conn.autocommit else None
    if cache is None:
        cache = NameIds()
        if conn.autocommit:
            _CACHES[conn] = cache
    lay, prods, sess = cache.missing(frames, layouts)
    if lay:
        counts = Counter(k for k in layouts if k in lay)
        _fetch_series(conn, cache, sorted(lay, key=lambda k: (-counts[k], -len(k[2]), k)))
    for kind, names, ids in (("producer", prods, cache.producers), ("session", sess, cache.sessions)):
        todo = sorted(names)
        for i in range(0, len(todo), MAX_NAMES_PER_CALL):
            chunk = todo[i : i + MAX_NAMES_PER_CALL]
            rows = conn.execute("SELECT o_id FROM name_ids(%s, %s)", [kind, chunk]).fetchall()
            ids.update(zip(chunk, (int(r[0]) for r in rows), strict=True))
    return cache


def _fetch_series(conn: psycopg.Connection[Any], cache: NameIds, layouts: Sequence[Layout]) -> None:
    """Series ids of ``layouts`` (the ones most wanted as a device's layout first), then the
    layouts of their devices, into the cache."""
    wanted = sorted(
        {(src, dev, ch, unit) for src, dev, names, units in layouts for ch, unit in zip(names, units, strict=True)}
        - cache.series.keys()
    )
    for i in range(0, len(wanted), MAX_NAMES_PER_CALL):
        chunk = wanted[i : i + MAX_NAMES_PER_CALL]
        cols = [list(c) for c in zip(*chunk, strict=True)]
        rows = conn.execute("SELECT o_device, o_series FROM series_ids(%s, %s, %s, %s)", cols).fetchall()
        cache.series.update(zip(chunk, ((int(d), int(s)) for d, s in rows), strict=True))
    resolved: list[tuple[Layout, int, tuple[int, ...]]] = []
    for layout in layouts:
        src, dev, names, units = layout
        ids = [cache.series[(src, dev, ch, unit)] for ch, unit in zip(names, units, strict=True)]
        device_id = ids[0][0] if ids else _device_id(conn, cache, src, dev)
        resolved.append((layout, device_id, tuple(s for _, s in ids)))
    _fetch_device_layouts(conn, cache, ((d, ids) for _, d, ids in resolved))
    for layout, device_id, series in resolved:
        canonical = cache.device_layouts.get(device_id)
        cache.layouts[layout] = (device_id, None if series == canonical else fixed_array(INT4_OID, list(series)))


def _fetch_device_layouts(
    conn: psycopg.Connection[Any], cache: NameIds, candidates: Iterable[tuple[int, tuple[int, ...]]]
) -> None:
    """The layouts of the candidates' devices not in the cache, set by ``device_layouts`` to the
    first candidate of each device that has none (an empty candidate is never proposed)."""
    proposed: dict[int, tuple[int, ...]] = {}
    for device_id, series in candidates:
        if series and device_id not in cache.device_layouts:
            proposed.setdefault(device_id, series)
    devs: list[int] = []
    series_ids: list[int] = []
    for n, (device_id, series) in enumerate(sorted(proposed.items()), 1):
        devs.extend([device_id] * len(series))
        series_ids.extend(series)
        if n == len(proposed) or len(devs) >= MAX_NAMES_PER_CALL:
            rows = conn.execute("SELECT o_device, o_layout FROM device_layouts(%s, %s)", [devs, series_ids])
            cache.device_layouts.update((int(d), tuple(lay)) for d, lay in rows.fetchall() if lay is not None)
            devs, series_ids = [], []


def _device_id(conn: psycopg.Connection[Any], cache: NameIds, src: str, dev: str) -> int:
    """A frame without channels still needs its device's id: through a placeholder series."""
    key = (src, dev, "", "")
    if key not in cache.series:
        row = conn.execute("SELECT o_device, o_series FROM series_ids(%s, %s, %s, %s)", [[src], [dev], [""], [""]])
        d, s = row.fetchone()  # type: ignore[misc]
        cache.series[key] = (int(d), int(s))
    return cache.series[key][0]
