-- The decision-id index as a hash index. Decision ids are random (uuid4 hex), so a btree on
-- them inserts every shipped row at a random leaf of a wide text index: the dearest of the
-- secondary indexes per shipped row (bench/audit.py, "price of each index"). The one query
-- that needs it (explain: WHERE decision_id = $1, the records of one decision) is an
-- equality lookup, which a hash index serves with 4-byte hash codes instead of the text.
--
-- Runs in the migration's transaction: building the index holds a SHARE lock on the
-- table, so shipping waits (the spools buffer) while reads go on. To build it ahead on a
-- large trail without blocking, create it under the same name by hand first (CREATE INDEX
-- ... ON ONLY, then CREATE INDEX CONCURRENTLY per partition and ALTER INDEX ... ATTACH
-- PARTITION; docs/audit.md): IF NOT EXISTS then skips the build. Idempotent.

CREATE INDEX IF NOT EXISTS audit_records_decision_hash
  ON haltgate.audit_records USING hash (decision_id);
DROP INDEX IF EXISTS haltgate.audit_records_decision;
