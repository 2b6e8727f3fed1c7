-- The chosen channels over time (numeric values), one series per device and channel.
SELECT observed_at AS "time",
       device || ' ' || channel AS metric,
       value
  FROM readings
 WHERE $__timeFilter(observed_at)
   AND device IN ($device)
   AND channel IN ($channel)
   AND value IS NOT NULL
 ORDER BY 1
