-- Recent runs: frames carrying a session (TELEMETRY_PRODUCER__SESSION, an import's --session).
SELECT session AS run,
       device,
       min(observed_at) AS started,
       max(observed_at) AS ended,
       count(DISTINCT (producer, seq)) AS frames,
       count(*) AS readings
  FROM readings
 WHERE session IS NOT NULL
   AND $__timeFilter(observed_at)
 GROUP BY session, device
 ORDER BY max(observed_at) DESC
 LIMIT 20
