"""What a failed store call raises: the caller refuses the batch and the client retries; nothing was half-written."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked; a write that raises it stored nothing (its transaction rolled back).

    Raised as such (not as StoreUnavailable) the batch itself cannot be stored (a constraint, a value the database
    refuses): retrying it will not help.
    """


class StoreUnavailable(StoreError):
    """The database is unreachable, gone, locked past the busy timeout or shutting down: retry later."""


class StoreFull(StoreUnavailable):
    """The disk (or the database's size cap) is full: retry once space is freed."""
