"""A serving process keeps its start-up objects out of the garbage collector's full passes
(``app.freeze_startup_objects``); an app made by a process that makes many (the tests) does
not, or every app's garbage would stay frozen with it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from asgi_lifespan import LifespanManager

from billing.app import create_app
from billing.config import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


async def test_a_serving_process_freezes_what_start_up_made(
    settings: Settings, unfrozen: None
) -> None:
    async with LifespanManager(create_app(settings, serving_process=True)):
        # Every object of start-up (and of the test session so far) is out of reach of a
        # full collection (its pause: bench/tried.md).
        assert gc.get_freeze_count() > 50_000


async def test_an_app_made_among_many_freezes_nothing(settings: Settings, unfrozen: None) -> None:
    async with LifespanManager(create_app(settings)):
        assert gc.get_freeze_count() == 0
