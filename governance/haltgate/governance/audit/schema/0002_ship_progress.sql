-- Shipping progress per spool: the position up to which a spool's records are in
-- haltgate.audit_records, updated in the same transaction as the records. It lets the
-- shipper COPY straight into the table (no staging pass) and still never insert a record
-- twice after a crash between commit and local acknowledgement. The primary key of
-- audit_records remains the backstop (the shipper falls back to INSERT .. ON CONFLICT).

CREATE TABLE haltgate.audit_ship_progress (
  spool_id   text        PRIMARY KEY,
  segment    bigint      NOT NULL,
  "offset"   bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE haltgate.audit_ship_progress IS
  'Per spool: (segment, offset) shipped into haltgate.audit_records.';

GRANT SELECT, INSERT, UPDATE ON haltgate.audit_ship_progress TO haltgate_audit_writer;
GRANT SELECT ON haltgate.audit_ship_progress TO haltgate_audit_reader;
