"""FastAPI dependencies shared by every domain's endpoints: settings, clock, database session.

They are ``async def`` though none awaits: FastAPI runs a plain ``def`` dependency in a
thread pool, a thread hop per dependency per request for an attribute read (9–17 % of the
confirmation path's samples in bench/tried.md's profile)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import Clock
from billing.config import Settings
from billing.db import autocommit_statements


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_outbound(request: Request) -> httpx.AsyncClient:
    """The app's shared client for outgoing HTTP calls."""
    client: httpx.AsyncClient = request.app.state.outbound
    return client


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The session factory, for use cases that manage their own transactions."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for an answer that only reads (``db.autocommit_statements``)."""
    async with request.app.state.sessions() as session:
        await autocommit_statements(session)
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
OutboundDep = Annotated[httpx.AsyncClient, Depends(get_outbound)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
