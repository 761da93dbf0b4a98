"""churnwatch stream pipeline: ingestion adapters, domain core and Faust wiring."""

__version__ = "0.1.0"
