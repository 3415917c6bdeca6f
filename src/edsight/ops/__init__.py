"""edsight.ops."""
