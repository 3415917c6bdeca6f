"""edsight.models."""
