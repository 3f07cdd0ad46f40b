"""Shared budget pools: leases from PostgreSQL, cascade detection, system-level halts.

Modules: ``lease`` (pure arithmetic and the overshoot bound), ``store`` (PostgreSQL),
``client`` (the sidecar's PoolClient), ``cascade`` (call-chain header and detection).
See docs/pools.md.
"""
