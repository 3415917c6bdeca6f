"""edsight.features."""
