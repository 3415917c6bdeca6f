"""edsight.synth."""
