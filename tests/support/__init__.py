"""Helpers shared by the test suites: a real profiler server subprocess and fresh databases."""
