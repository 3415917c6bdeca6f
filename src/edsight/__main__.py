"""``python -m edsight`` runs the command line."""

from edsight.cli import app

app()
