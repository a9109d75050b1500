"""Storage errors that services may handle without knowing SQLAlchemy."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError


class WriteConflict(Exception):
    """A unique constraint refused the write: another writer got there first. Re-read and retry."""


# Anything else the database driver raises (unreachable, locked, disk full): callers answer "retry later".
StorageError = SQLAlchemyError


class DatabaseUnavailable(SQLAlchemyError):
    """The database could not be reached (connection refused or reset, server starting up or shutting down):
    a StorageError, so callers answer "retry later" (503 with Retry-After) rather than 500."""
