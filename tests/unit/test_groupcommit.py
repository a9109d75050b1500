"""GroupCommit: concurrent submissions are written together, each caller gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from services.groupcommit import GroupCommit


class Store:
    def __init__(self, fail_on: set[str] = frozenset(), delay: float = 0.0) -> None:
        self.groups: list[list[str]] = []
        self.fail_on, self.delay = fail_on, delay

    async def write(self, items: list[str]) -> list[str]:
        await asyncio.sleep(self.delay)
        if self.fail_on & set(items):
            raise ValueError(f"bad item in {items}")
        self.groups.append(list(items))
        return [item.upper() for item in items]


async def test_one_caller_at_a_time_writes_groups_of_one() -> None:
    store = Store()
    commit = GroupCommit(store.write)
    assert [await commit.submit(x) for x in "abc"] == ["A", "B", "C"]
    assert store.groups == [["a"], ["b"], ["c"]]


async def test_concurrent_callers_share_a_group_in_arrival_order() -> None:
    store = Store(delay=0.01)
    commit = GroupCommit(store.write)
    results = await asyncio.gather(*(commit.submit(x) for x in "abcdef"))
    assert results == list("ABCDEF")
    assert store.groups == [list("abcdef")]
    assert (commit.groups, commit.items) == (1, 6)


async def test_callers_arriving_during_a_write_form_the_next_group() -> None:
    store = Store(delay=0.02)
    commit = GroupCommit(store.write)
    first = asyncio.create_task(commit.submit("a"))
    await asyncio.sleep(0.005)  # "a" is being written
    assert await asyncio.gather(first, *(commit.submit(x) for x in "bcd")) == list("ABCD")
    assert store.groups == [["a"], ["b", "c", "d"]]


async def test_max_weight_bounds_a_group() -> None:
    store = Store(delay=0.01)
    commit = GroupCommit(store.write, weight=len, max_weight=4)
    results = await asyncio.gather(*(commit.submit(x) for x in ["aa", "bb", "cc", "ddddd", "e"]))
    assert results == ["AA", "BB", "CC", "DDDDD", "E"]
    # "ddddd" alone is heavier than the bound: a group of its own, never dropped
    assert store.groups == [["aa", "bb"], ["cc"], ["ddddd"], ["e"]]


async def test_a_failing_item_fails_only_its_caller() -> None:
    store = Store(fail_on={"bad"}, delay=0.01)
    commit = GroupCommit(store.write)
    results = await asyncio.gather(*(commit.submit(x) for x in ["first", "a", "bad", "b"]), return_exceptions=True)
    assert results[:2] == ["FIRST", "A"] and results[3] == "B"
    assert isinstance(results[2], ValueError)
    # the group [a, bad, b] failed as a whole and was written again one by one
    assert store.groups == [["first"], ["a"], ["b"]]


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    store = Store(delay=0.02)
    commit = GroupCommit(store.write)
    first = asyncio.create_task(commit.submit("first"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(commit.submit(x)) for x in "xyz"]
    await asyncio.sleep(0)
    waiting[1].cancel()
    assert await first == "FIRST"
    assert await waiting[0] == "X" and await waiting[2] == "Z"
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]
    assert store.groups == [["first"], ["x", "y", "z"]]  # "y" was written: its caller only stopped waiting
