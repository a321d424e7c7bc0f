"""Observing a running controller: JSON logs, Prometheus metrics, lateness reports."""
