-- Current state per device, stale channels marked (view current_state_status, migration 008).
SELECT device,
       channel,
       coalesce(value::text, text_value) AS value,
       unit,
       quality,
       CASE WHEN stale THEN 'STALE' ELSE 'fresh' END AS freshness,
       last_seen_at,
       last_good_at,
       stale_after_s
  FROM current_state_status
 WHERE device IN ($device)
 ORDER BY device, channel
