"""Secrets in the OS keyring (service "hearth"): the Hugging Face token, remote servers'
tokens. One place, so every secret is kept, read and removed the same way and none is
ever written to Hearth's own files or logs.

`keyring` may have no usable backend (a headless Linux session): reads then give None and
writes raise `NoKeyring` with a sentence; each caller decides what to fall back to.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

KEYRING_SERVICE = "hearth"


class NoKeyring(Exception):
    """No OS keyring could keep the secret; str() says so in a sentence."""


def get_secret(user: str) -> str | None:
    """The secret kept under `user`, or None (none kept, or no keyring)."""
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, user) or None
    except Exception:  # keyring may have no backend at all: nothing is kept there
        return None


def set_secret(user: str, secret: str) -> None:
    """Keep `secret` under `user` in the OS keyring. Never logs the secret."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, user, secret)
    except Exception as e:  # no backend (headless Linux), locked keychain, ...
        log.info("no usable OS keyring (%s)", type(e).__name__)
        raise NoKeyring(
            "This system has no usable OS keyring (Secret Service, KWallet, macOS Keychain "
            "or Windows Credential Manager), so Hearth cannot keep the token safely."
        ) from None


def delete_secret(user: str) -> None:
    """Forget the secret kept under `user` (nothing happens when there is none)."""
    try:
        import keyring

        keyring.delete_password(KEYRING_SERVICE, user)
    except Exception:  # not there, or no keyring: nothing to forget
        pass
