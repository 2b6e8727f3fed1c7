-- GPS track: one point per fix with both coordinates (gps_nmea latitude/longitude, degrees).
SELECT observed_at AS "time",
       device,
       max(value) FILTER (WHERE channel = 'latitude') AS latitude,
       max(value) FILTER (WHERE channel = 'longitude') AS longitude
  FROM readings
 WHERE $__timeFilter(observed_at)
   AND source = 'gps_nmea'
   AND channel IN ('latitude', 'longitude')
   AND device IN ($device)
 GROUP BY observed_at, device
HAVING count(value) FILTER (WHERE channel = 'latitude') = 1
   AND count(value) FILTER (WHERE channel = 'longitude') = 1
 ORDER BY 1
