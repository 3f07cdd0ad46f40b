-- haltgate audit trail: the append-only, time-partitioned record table.
--
-- Roles (NOLOGIN groups; grant them to login users):
--   haltgate_audit_writer  INSERT + SELECT (the shipper), may create monthly partitions
--                          through haltgate.audit_ensure_partition (SECURITY DEFINER)
--   haltgate_audit_reader  SELECT (query API, verify, export)
-- Nobody but the owner gets UPDATE, DELETE or TRUNCATE, and a trigger refuses them anyway.
-- Retention drops whole monthly partitions (haltgate.audit_drop_partitions_before).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haltgate_audit_writer') THEN
    CREATE ROLE haltgate_audit_writer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'haltgate_audit_reader') THEN
    CREATE ROLE haltgate_audit_reader NOLOGIN;
  END IF;
END
$$;

CREATE TABLE haltgate.audit_records (
  record_id    uuid             NOT NULL,
  ts           timestamptz      NOT NULL,
  chain_id     text             NOT NULL,
  seq          bigint           NOT NULL,
  prev_hash    text             NOT NULL,
  hash         text             NOT NULL,
  decision_id  text             NOT NULL,
  phase        text             NOT NULL,
  namespace    text             NOT NULL,
  workload     text             NOT NULL,
  pod          text             NOT NULL,
  run_id       text             NOT NULL,
  kind         text,
  target       text             NOT NULL,
  model        text,
  tool         text,
  decision     text             NOT NULL,
  failure_type text,
  code         text,
  cost_usd     double precision,
  latency_ms   double precision,
  status       integer,
  -- The canonical JSON line exactly as hashed (plus its hash): the source of truth that
  -- verify recomputes from; the typed columns above are indexes into it.
  record       text             NOT NULL,
  shipped_at   timestamptz      NOT NULL DEFAULT now(),
  -- Partitioned tables need the partition key in every unique constraint; a re-shipped
  -- record carries the same (ts, record_id), so this still makes shipping idempotent. With
  -- ts first the same index serves time-ordered listing and cursor pagination.
  PRIMARY KEY (ts, record_id)
) PARTITION BY RANGE (ts);

COMMENT ON TABLE haltgate.audit_records IS
  'haltgate audit trail: append-only, hash-chained per agent run (chain_id, seq).';

-- Every index is paid by every shipped row, so: the primary key serves time order and
-- pagination; refusals, failures and tool calls are the minority, hence partial indexes.
CREATE INDEX audit_records_chain ON haltgate.audit_records (chain_id, seq);
CREATE INDEX audit_records_agent ON haltgate.audit_records (namespace, workload, ts);
CREATE INDEX audit_records_run ON haltgate.audit_records (run_id, ts);
CREATE INDEX audit_records_denied ON haltgate.audit_records (ts) WHERE decision = 'deny';
CREATE INDEX audit_records_failure ON haltgate.audit_records (failure_type, ts)
  WHERE failure_type IS NOT NULL;
CREATE INDEX audit_records_tool ON haltgate.audit_records (tool, ts) WHERE tool IS NOT NULL;

-- Rows whose month has no partition yet land here instead of failing the shipper.
CREATE TABLE haltgate.audit_records_default PARTITION OF haltgate.audit_records DEFAULT;

CREATE FUNCTION haltgate.audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'haltgate audit records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_records_append_only
  BEFORE UPDATE OR DELETE ON haltgate.audit_records
  FOR EACH ROW EXECUTE FUNCTION haltgate.audit_refuse_change();
CREATE TRIGGER audit_records_no_truncate
  BEFORE TRUNCATE ON haltgate.audit_records
  FOR EACH STATEMENT EXECUTE FUNCTION haltgate.audit_refuse_change();
CREATE TRIGGER audit_records_no_truncate
  BEFORE TRUNCATE ON haltgate.audit_records_default
  FOR EACH STATEMENT EXECUTE FUNCTION haltgate.audit_refuse_change();

-- Create the monthly partition holding `at` if missing. Callable by the writer role, which
-- has no CREATE privilege of its own. Two shippers may create the same partition at once: the
-- second waits on the advisory lock, but its catalog cache can still say "absent" after the
-- first commits (an advisory lock does not process catalog invalidations), so CREATE TABLE
-- can fail with duplicate_table (or a pg_type unique_violation). The table existing is the
-- outcome the caller wants: both count as success.
CREATE FUNCTION haltgate.audit_ensure_partition(at timestamptz) RETURNS text
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

-- Retention: drop every monthly partition that ends on or before `cutoff`. Owner only.
CREATE FUNCTION haltgate.audit_drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, haltgate AS $$
DECLARE
  part record;
BEGIN
  FOR part IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'haltgate.audit_records'::regclass
      AND c.relname ~ '^audit_records_[0-9]{6}$'
      AND to_date(substr(c.relname, 15), 'YYYYMM') + interval '1 month'
          <= cutoff AT TIME ZONE 'UTC'
    ORDER BY c.relname
  LOOP
    EXECUTE format('DROP TABLE haltgate.%I', part.relname);
    RETURN NEXT part.relname;
  END LOOP;
END
$$;

REVOKE ALL ON FUNCTION haltgate.audit_ensure_partition(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION haltgate.audit_drop_partitions_before(timestamptz) FROM PUBLIC;
GRANT USAGE ON SCHEMA haltgate TO haltgate_audit_writer, haltgate_audit_reader;
GRANT SELECT, INSERT ON haltgate.audit_records TO haltgate_audit_writer;
GRANT SELECT ON haltgate.audit_records TO haltgate_audit_reader;
GRANT EXECUTE ON FUNCTION haltgate.audit_ensure_partition(timestamptz) TO haltgate_audit_writer;
