"""Benchmarks that print figures. Timing belongs here, not in unit tests."""
