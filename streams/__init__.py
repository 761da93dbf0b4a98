"""churnwatch stream pipeline: ingestion adapters, domain core and Faust wiring."""
