"""Ingestion: raw topic bytes (canonical, CloudEvents, Stripe, Segment) to canonical events or dead letters.

Import from the submodules (`streams.ingest.decode` is the entry point); this package stays import-light.
"""
