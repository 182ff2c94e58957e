"""Slice: weekly research-paper briefings by email."""

__version__ = "0.1.0"
