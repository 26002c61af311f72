"""The journal: the DuckDB file, its schema and every query; nothing else touches SQL."""

from dynwf.journal._journal import Durability, InstanceRow, Journal, Row, encode

__all__ = ["Durability", "InstanceRow", "Journal", "Row", "encode"]
