"""The one exception hierarchy of edsight.

Every error a user can cause derives from :class:`EdsightError`; the CLI turns it
into a one-line message and exit code 2, the web layer into a 4xx response.
"""

from __future__ import annotations


class EdsightError(Exception):
    """Root of all errors edsight raises on purpose."""


class InvalidInput(EdsightError):
    """Input that does not match what edsight expects (file, argument, payload)."""


class NotAuthorized(EdsightError):
    """The actor may not see or do what was asked."""


class SourceError(EdsightError):
    """A data source (API, file share) failed or answered something unusable."""


class WarehouseError(EdsightError):
    """The warehouse is missing, locked or not in the expected state."""
