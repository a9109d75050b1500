"""Per-chat, per-group and per-bot send budgets (sliding windows, exact rather than bursty buckets),
plus the pauses that a 429's retry_after imposes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from services.ports import ChannelLimits

# A group's "per minute" counted over a second more: Telegram and WeCom count a message when it arrives, the
# pacer when it is sent, and a 21st message whose request travels faster than the 1st's would otherwise arrive
# inside their minute (the storm benchmark saw exactly that 429).
GROUP_WINDOW = 61.0


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = max(1, limit), window
        self._times: deque[float] = deque()

    def delay(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        self._times.append(now)

    def used(self, now: float) -> int:
        """Events in the window that ends ``now``."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times)


class Pacer:
    def __init__(self, limits: ChannelLimits, is_group: Callable[[str], bool]) -> None:
        self._limits, self._is_group = limits, is_group
        self._chat: dict[str, SlidingWindow] = {}
        self._group: dict[str, SlidingWindow] = {}
        self._bot = SlidingWindow(max(1, int(limits.per_bot_per_second)), 1.0)
        self._paused_until: dict[str, float] = {}
        self._bot_paused_until = 0.0

    def _windows(self, chat_id: str) -> list[SlidingWindow]:
        chat = self._chat.get(chat_id)
        if chat is None:
            # one message per 1/rate seconds, expressed as a window of one event
            chat = self._chat[chat_id] = SlidingWindow(1, 1.0 / self._limits.per_chat_per_second)
        windows = [chat, self._bot]
        if self._is_group(chat_id):
            group = self._group.get(chat_id)
            if group is None:
                group = self._group[chat_id] = SlidingWindow(int(self._limits.per_group_per_minute), GROUP_WINDOW)
            windows.append(group)
        return windows

    def delay(self, chat_id: str, now: float) -> float:
        waits = [w.delay(now) for w in self._windows(chat_id)]
        waits.append(self._paused_until.get(chat_id, 0.0) - now)
        waits.append(self._bot_paused_until - now)
        return max(0.0, *waits)

    def held_chats(self, now: float) -> list[str]:
        """Chats that may not send now (their budget is spent or a 429 paused them)."""
        return [chat for chat in {*self._chat, *self._paused_until} if self.delay(chat, now) > 0]

    def next_free(self, now: float) -> float:
        """Seconds until the first held chat may send again (a large number when none is held)."""
        waits = [self.delay(chat, now) for chat in self.held_chats(now)]
        return min(waits, default=3600.0)

    def room(self, chat_id: str, now: float) -> int:
        """How many messages ``chat_id`` may still send in the next 60 s: its group window's limit less what
        the last window sent, bounded by the per-chat rate (a chat that is not a group: that rate alone)."""
        per_chat = int(min(self._limits.per_chat_per_second * 60.0, 1e9))
        if not self._is_group(chat_id):
            return max(0, per_chat)
        group = self._windows(chat_id)[-1]
        return max(0, min(per_chat, group.limit - group.used(now)))

    def record(self, chat_id: str, now: float) -> None:
        for window in self._windows(chat_id):
            window.record(now)

    def pause(self, chat_id: str, until: float) -> None:
        self._paused_until[chat_id] = max(self._paused_until.get(chat_id, 0.0), until)
