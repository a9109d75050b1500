"""The ingest token: ALERTPILOT_INGEST_TOKEN, or one generated at first start and kept in the database."""

from __future__ import annotations

import secrets

from bot.settings import Settings
from storage.db import Database

KEY = "ingest_token"


async def ensure_ingest_token(db: Database, settings: Settings) -> tuple[str, bool]:
    """(token, generated): the configured token, or the stored one (generated now if there is none)."""
    if settings.ingest_token is not None:
        return settings.ingest_token.get_secret_value(), False
    async with db.write() as tx:
        token = await tx.kv.put_if_absent(KEY, secrets.token_urlsafe(24))
    return token, True


async def stored_ingest_token(settings: Settings) -> str | None:
    """The token a running instance uses, read without generating one (for the CLI)."""
    if settings.ingest_token is not None:
        return settings.ingest_token.get_secret_value()
    db = Database(settings.database_url)
    try:
        await db.create_schema()
        async with db.read() as tx:
            return await tx.kv.get(KEY)
    finally:
        await db.dispose()
