"""edsight.stats."""
