"""Storage errors that services may handle without knowing SQLAlchemy."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError


class WriteConflict(Exception):
    """A unique constraint refused the write: another writer got there first. Re-read and retry."""


# Anything else the database driver raises (unreachable, locked, disk full): callers answer "retry later".
StorageError = SQLAlchemyError
