"""subminute: precise sub-minute schedules."""
