"""Flow tests share the session-wide ``prefect_harness`` of tests/conftest.py."""
