"""Model prices: the shipped versioned price table plus policy overrides.

The implementation lives in ``haltgate.governance.engine.pricing`` (the engine prices
reservations with it); this module is its public home.
"""

from haltgate.governance.engine.pricing import (
    DATA_DIR,
    SHIPPED_TABLE,
    Price,
    PriceTable,
    PriceTableError,
    ShippedTable,
    load_shipped,
    load_table_file,
    normalise_model,
    parse_table,
)

__all__ = [
    "DATA_DIR",
    "SHIPPED_TABLE",
    "Price",
    "PriceTable",
    "PriceTableError",
    "ShippedTable",
    "load_shipped",
    "load_table_file",
    "normalise_model",
    "parse_table",
]
