"""The journal: the DuckDB file, its schema and every query; nothing else touches SQL."""
