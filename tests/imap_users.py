"""Test users for the IMAP server (stand-in until the directory's Authenticator is on main)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_config
from gateway.imap.session import AuthFailed, Hooks, Login
from gateway.store.mailstore import StorePool


def users_hooks(home: Path, users: dict[str, str], patients: set[str] = frozenset()) -> Hooks:
    config = load_config(home / "config.toml")

    async def authenticate(address: str, password: str, client_ip: str) -> Login:
        if users.get(address.lower()) == password:
            return Login(address.lower(), address.lower() in patients)
        raise AuthFailed("authentication failed")

    return Hooks(pool=StorePool(config.mailboxes_path), authenticate=authenticate,
                 hostname=config.gateway.hostname)
