"""Fault-injection suite: tiny pipelines per flow and a kill/rerun/compare harness."""
