"""ferrodicom.dictionaries."""
