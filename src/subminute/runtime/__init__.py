"""Runtimes: the local runtime (SQLite control file, in-process targets)."""
