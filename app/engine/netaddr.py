"""Which listening addresses only this machine can reach: one rule for `hearth serve`, the
window's API and `hearth rpc-serve`, which warn before anything else is exposed."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (IPv6 may come bracketed: "[::1]")."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
