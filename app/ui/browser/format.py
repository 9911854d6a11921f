"""Short texts the browser, the queue and the library show: counts, ages, speeds, sources.

Qt-free and without the Hub client, so the views can import it at start-up.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from app.engine.gguf_info import human_bytes

# LocalModel.source -> the badge the library shows.
SOURCE_LABELS = {
    "hearth": "Hearth",
    "added-file": "added",
    "folder": "folder",
    "hf-cache": "HF cache",
    "lmstudio": "LM Studio",
    "ollama": "Ollama",
    "remote": "remote",
}
SOURCE_TIPS = {
    "hearth": "Downloaded by Hearth: Hearth may delete it.",
    "added-file": "A file you opened or dropped, listed where it is.",
    "folder": "Found in a folder you added.",
    "hf-cache": "Found in the Hugging Face cache (read-only, in place).",
    "lmstudio": "Found in LM Studio's models folder (read-only, in place).",
    "ollama": "Found in Ollama's model store (read-only, in place).",
    "remote": "Served by a remote server: replies stream from there.",
}


def count(n: int | None) -> str:
    """12, 1.2k, 34k, 5.6M: a download or like count at a glance."""
    if n is None:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return str(n)


def params(n: int | None) -> str | None:
    """1.2M, 7.6B params; None when unknown."""
    if not n:
        return None
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}{unit}".replace(".0", "") if v < 100 else f"{v:.0f}{unit}"
    return str(n)


def age(when: datetime | float | None, now: float | None = None, short: bool = False) -> str:
    """'just now', '5 min ago', '3 h ago', 'yesterday', '4 days ago', '2 months ago';
    `short`: '4 d ago', '2 mo ago' (for narrow rows)."""
    if when is None:
        return "never"
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        when = when.timestamp()
    seconds = max(0.0, (time.time() if now is None else now) - when)
    minutes, hours, days = seconds / 60, seconds / 3600, seconds / 86400
    if minutes < 1:
        return "just now"
    if hours < 1:
        return f"{int(minutes)} min ago"
    if days < 1:
        return f"{int(hours)} h ago"
    if days < 2:
        return "yesterday"
    if days < 14:
        return f"{int(days)} {'d' if short else 'days'} ago"
    if days < 60:
        return f"{int(days // 7)} {'wk' if short else 'weeks'} ago"
    if days < 730:
        return f"{int(days // 30)} {'mo' if short else 'months'} ago"
    return f"{int(days // 365)} {'yr' if short else 'years'} ago"


def date(when: datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d") if when else "?"


def duration(seconds: float | None) -> str:
    """12 s, 3 min 05 s, 1 h 05 min; '?' while unknown."""
    if seconds is None or math.isnan(seconds) or seconds > 99 * 3600:
        return "?"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def speed(bytes_per_s: float) -> str:
    return f"{human_bytes(bytes_per_s)}/s" if bytes_per_s > 0 else "—"


def retry(attempt: int, max_attempts: int, delay: float) -> str:
    """'retrying 2 of 5 in 4 s'."""
    return f"retrying {attempt} of {max_attempts} in {duration(delay)}"


def source(name: str) -> str:
    return SOURCE_LABELS.get(name, name)
