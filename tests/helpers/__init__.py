"""Reusable helpers for the template's tests: rendering, environments, servers."""
