-- Issue 15: the view finds a reading's place in its frame without searching the frame's series.
--
-- Most frames of a device carry the same channels in the same order. Each device now keeps one
-- such arrangement, its layout (devices.layout: series ids in frame order), fixed once and never
-- changed; each series of it knows its place there (series.slot). A frame whose series are
-- exactly its device's layout is stored with series NULL, and the view takes the reading's
-- place from series.slot instead of array_position over the frame's series (which the view
-- evaluated for each reading and each column read). Every other frame (a subset of channels,
-- another order, a device without a layout yet, rows put back by an archive restore) keeps its
-- series array, read as before. Nothing already stored is rewritten.
--
-- The layout is set by device_layouts (SECURITY DEFINER, called by the writer before it writes
-- frames with series NULL, in a transaction of its own or in the frames' own): the first valid
-- layout proposed for a device wins, under a row lock taken in device-id order, so concurrent
-- replicas agree on it; a writer then stores series NULL only for frames whose series equal
-- the layout device_layouts returned. The writer role cannot UPDATE devices or series.
ALTER TABLE readings_packed ALTER COLUMN series DROP NOT NULL;
ALTER TABLE devices ADD COLUMN layout int4[];
ALTER TABLE series ADD COLUMN slot int4;
COMMENT ON COLUMN devices.layout IS
    'The device''s series ids in frame order, fixed once: frames with exactly these series store series NULL.';
COMMENT ON COLUMN series.slot IS
    'This series'' place (1-based) in its device''s layout; NULL when it is not in the layout.';
COMMENT ON COLUMN readings_packed.series IS
    'Series ids in value order; NULL when they are the device''s layout (devices.layout).';

CREATE OR REPLACE VIEW readings AS
SELECT f.observed_at,
       f.received_at,
       s.source,
       s.device,
       s.channel,
       f.num_values[CASE WHEN f.series IS NULL THEN s.slot ELSE array_position(f.series, s.id) END] AS value,
       f.text_values[CASE WHEN f.series IS NULL THEN s.slot ELSE array_position(f.series, s.id) END] AS text_value,
       s.unit,
       ((ARRAY['good', 'warn', 'no_data', 'error'])[
           coalesce(f.qualities[CASE WHEN f.series IS NULL THEN s.slot ELSE array_position(f.series, s.id) END], 0)
           + 1])::text AS quality,
       ss.session,
       p.producer,
       f.seq
  FROM series s, readings_packed f
  LEFT JOIN sessions ss ON ss.id = f.session_id
  LEFT JOIN producers p ON p.id = f.producer_id
 WHERE s.device_id = f.device_id
   AND CASE WHEN f.series IS NULL THEN s.slot ELSE array_position(f.series, s.id) END IS NOT NULL;

-- Sets the layout of each device that has none to the one proposed for it, and returns every
-- proposed device's layout (NULL when it still has none). Proposals: devs[i], series_ids[i] is
-- the i-th series of device devs[i]'s proposed layout, in frame order. A proposal is refused
-- (the device keeps no layout) when it is empty, repeats a series, or names a series of
-- another device.
CREATE FUNCTION device_layouts(devs int4[], series_ids int4[])
RETURNS TABLE (o_device int, o_layout int4[])
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF cardinality(devs) > 100000 OR cardinality(devs) <> cardinality(series_ids) THEN
        RAISE EXCEPTION 'device_layouts: at most 100000 series per call, as many devices as series';
    END IF;
    -- Row locks in id order: two replicas proposing for the same devices never wait in a cycle.
    PERFORM 1 FROM devices WHERE id = ANY (devs) AND layout IS NULL ORDER BY id FOR UPDATE;
    WITH proposed AS (
        SELECT u.d, array_agg(u.s ORDER BY u.i) AS lay
          FROM unnest(devs, series_ids) WITH ORDINALITY AS u (d, s, i)
         GROUP BY u.d
    ), valid AS (
        SELECT p.d, p.lay FROM proposed p
         WHERE cardinality(p.lay) > 0
           AND (SELECT count(DISTINCT x) FROM unnest(p.lay) AS x) = cardinality(p.lay)
           AND (SELECT count(*) FROM series se WHERE se.id = ANY (p.lay) AND se.device_id = p.d) = cardinality(p.lay)
    ), chosen AS (
        UPDATE devices dv SET layout = v.lay FROM valid v
         WHERE dv.id = v.d AND dv.layout IS NULL
        RETURNING dv.id, dv.layout
    )
    UPDATE series se SET slot = array_position(c.layout, se.id)
      FROM chosen c
     WHERE se.device_id = c.id AND se.id = ANY (c.layout);
    RETURN QUERY SELECT dv.id, dv.layout FROM devices dv WHERE dv.id = ANY (devs) ORDER BY dv.id;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION device_layouts(int4[], int4[]) SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION device_layouts(int4[], int4[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION device_layouts(int4[], int4[]) TO telemetry_writer;
