"""ecg package."""
