"""SQL migrations of the audit database, applied in order by ``haltgate.governance.audit.migrate``.

Files are named ``NNNN_description.sql``; an applied file must never change (its SHA-256 is
recorded and checked).
"""
