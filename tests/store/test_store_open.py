"""Opening the store: unsupported URLs are refused, an unreachable server fails fast, ping reports health."""

from __future__ import annotations

import socket

import pytest

from bot.store.store import Store, make_engine


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unsupported_backend_is_refused() -> None:
    """Only SQLite and PostgreSQL are supported."""
    with pytest.raises(ValueError, match="unsupported database backend"):
        make_engine("mysql+aiomysql://u@127.0.0.1/db")


async def test_open_fails_when_the_server_is_down() -> None:
    """Store.open connects once, so a wrong URL fails at start rather than at the first incident."""
    with pytest.raises(ConnectionRefusedError):
        await Store.open(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere")


async def test_ping_is_false_when_the_server_is_down() -> None:
    """ping() answers False, without raising, when the database cannot be reached."""
    store = Store(make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere"))
    try:
        assert await store.ping(timeout=2) is False
    finally:
        await store.close()
