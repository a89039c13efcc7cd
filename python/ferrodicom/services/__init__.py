"""ferrodicom.services."""
