"""The SQLite file: its one owner (connections, transactions, schema, migrations)."""
