-- Recent runs (table runs, migration 009): started in the time range, or still open.
SELECT name AS run,
       kind,
       array_to_string(devices, ', ') AS devices,
       started_at,
       ended_at,
       status,
       origin,
       extract(epoch FROM coalesce(ended_at, now()) - started_at) AS duration_s
  FROM runs
 WHERE $__timeFilter(started_at) OR ended_at IS NULL
 ORDER BY started_at DESC
 LIMIT 20
