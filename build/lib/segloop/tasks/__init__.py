"""Prefect tasks of segloop: each wraps one library call (retries, caching, tags)."""

from segloop.runtime import configure_offline

configure_offline()
