"""segloop."""
