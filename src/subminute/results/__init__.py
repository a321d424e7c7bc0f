"""What fires leave behind: fire records, their sinks, kept bodies and export."""
