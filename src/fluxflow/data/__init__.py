"""Embedded datasets and their judges (arrive with the data issue)."""
