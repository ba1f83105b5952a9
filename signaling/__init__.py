"""signaling package."""
