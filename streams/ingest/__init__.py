"""Ingestion: raw topic bytes to canonical events, skips or dead letters (entry: `decode.py`)."""
