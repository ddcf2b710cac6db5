"""Checks: what is monitored, how, and from where."""
