"""What a failed store call raises; a write that raises stored nothing (its transaction rolled back).

Two classes, by what the caller should do:

- `StoreUnavailable` (and `StoreFull`): retryable. The database is down, locked, or full; the same batch will be
  stored once it is back, so the receiver refuses the request (503 / UNAVAILABLE with Retry-After).
- `RecordRejected`: permanent. The batch holds a value the database can never take (a number out of its column's
  range, text it cannot encode, a constraint); retrying the same batch fails the same way, so the writer isolates
  the records at fault and the receiver rejects them through OTLP partial success.

A bare `StoreError` is neither (e.g. the store was closed); the writer treats it as permanent.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked; a write that raises it stored nothing (its transaction rolled back)."""


class StoreUnavailable(StoreError):
    """The database is unreachable, gone, locked past the busy timeout or shutting down: retry later."""


class StoreFull(StoreUnavailable):
    """The disk (or the database's size cap) is full: retry once space is freed."""


class RecordRejected(StoreError):
    """The database refuses a value of the batch (out of range, not encodable, a constraint): retrying will not
    help. Raised for a whole batch; the writer finds which records are at fault by writing smaller batches."""


# Python exceptions that the drivers raise, before the database sees the statement, for a value they cannot send.
VALUE_ERRORS: tuple[type[Exception], ...] = (OverflowError, UnicodeError, ValueError, TypeError)
