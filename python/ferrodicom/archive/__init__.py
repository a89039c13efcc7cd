"""ferrodicom.archive."""
