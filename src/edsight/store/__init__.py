"""edsight.store."""
