"""FlexGrid's database: SQLModel tables and sessions (SQLite by default, PostgreSQL by URL)."""

from flexgrid.store.db import (
    chain_index_path,
    database_url,
    flexgrid_home,
    init_db,
    make_engine,
    session_factory,
    session_scope,
)
from flexgrid.store.tables import ChainEvent, IndexedBlock, IndexerCursor, OrderRecord

__all__ = [
    "ChainEvent",
    "IndexedBlock",
    "IndexerCursor",
    "OrderRecord",
    "chain_index_path",
    "database_url",
    "flexgrid_home",
    "init_db",
    "make_engine",
    "session_factory",
    "session_scope",
]
