"""edsight.ingest."""
