"""File input and output helpers."""
