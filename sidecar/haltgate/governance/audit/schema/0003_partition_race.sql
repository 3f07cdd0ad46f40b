-- Two shippers may create the same monthly partition at once. The second one waits on the
-- advisory lock, but its catalog cache can still say "absent" after the first commits
-- (taking an advisory lock does not process catalog invalidations), so its CREATE TABLE
-- failed with "relation ... already exists" and counted as a ship error. The table existing
-- is the outcome the caller wants: treat duplicate_table (and the pg_type unique_violation
-- a concurrent CREATE can raise instead) as success.
CREATE OR REPLACE FUNCTION haltgate.audit_ensure_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, haltgate AS $$
DECLARE
  lo timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  hi timestamptz := lo + interval '1 month';
  name text := 'audit_records_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
  IF to_regclass('haltgate.' || name) IS NOT NULL THEN
    RETURN name;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('haltgate.audit_ensure_partition'));
  IF to_regclass('haltgate.' || name) IS NOT NULL THEN
    RETURN name;
  END IF;
  BEGIN
    EXECUTE format(
      'CREATE TABLE haltgate.%I PARTITION OF haltgate.audit_records FOR VALUES FROM (%L) TO (%L)',
      name, lo, hi);
  EXCEPTION
    WHEN check_violation THEN
      -- The default partition already holds rows of this month: leave them there.
      RETURN 'audit_records_default';
    WHEN duplicate_table OR unique_violation THEN
      -- Another caller created it (with its trigger, in the same transaction): done.
      RETURN name;
  END;
  EXECUTE format(
    'CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON haltgate.%I '
    'FOR EACH STATEMENT EXECUTE FUNCTION haltgate.audit_refuse_change()', name);
  RETURN name;
END
$$;
