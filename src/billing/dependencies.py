"""FastAPI dependencies shared by every domain's endpoints: settings, clock, database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import Clock
from billing.config import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_outbound(request: Request) -> httpx.AsyncClient:
    """The app's shared client for outgoing HTTP calls."""
    client: httpx.AsyncClient = request.app.state.outbound
    return client


def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The session factory, for use cases that manage their own transactions."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
OutboundDep = Annotated[httpx.AsyncClient, Depends(get_outbound)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
