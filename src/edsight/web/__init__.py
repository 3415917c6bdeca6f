"""edsight.web."""
