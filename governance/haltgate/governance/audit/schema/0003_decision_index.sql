-- `haltgate audit explain` and GET /v1/decisions/{id}/explain find a decision's records
-- (intent, outcome) by decision id; without an index that is a scan of every partition.

CREATE INDEX audit_records_decision ON haltgate.audit_records (decision_id);
