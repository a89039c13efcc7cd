"""ferrodicom.profiles."""
