"""The aiogram Dispatcher: routers plus the services they need, delivered by name."""

from __future__ import annotations

from aiogram import Dispatcher

from bot.deps import Deps
from bot.middlewares import ChatLanguageMiddleware, LogContextMiddleware
from handlers.telegram import assistant, callbacks, commands, language, scheduled


def build_dispatcher(deps: Deps) -> Dispatcher:
    dp = Dispatcher(**deps.workflow_data())
    dp.update.outer_middleware(LogContextMiddleware())
    dp.update.outer_middleware(ChatLanguageMiddleware(deps.languages))
    # the command router goes last: its catch-all answers commands nobody else took
    dp.include_routers(
        callbacks.build_router(), assistant.build_router(), scheduled.build_router(), language.build_router(),
        commands.build_router(),
    )
    return dp
