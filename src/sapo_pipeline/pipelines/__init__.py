"""Kedro pipelines: the only package that knows the catalog. Each is thin wiring over the library."""
