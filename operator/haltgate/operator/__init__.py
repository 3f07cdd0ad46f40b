"""The haltgate operator: admission webhooks (inject, validate), policy and pool
reconciliation, external halts. Run it with ``haltgate operator``."""
