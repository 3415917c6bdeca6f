"""edsight.governance."""
