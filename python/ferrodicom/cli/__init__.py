"""ferrodicom.cli."""
