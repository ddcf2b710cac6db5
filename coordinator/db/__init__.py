"""Persistence: Piccolo tables, the engine chosen by HC_DATABASE_URL, and migrations."""
