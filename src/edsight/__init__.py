"""edsight: learning analytics and student early warning."""

__version__ = "0.1.0"
