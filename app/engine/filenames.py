"""What a GGUF file's name says, in one place for the library, the Hub browser, the
downloader and the file checks.

- A split model is `prefix-00001-of-00003.gguf`, `prefix-00002-of-00003.gguf`, ...: the
  spelling llama.cpp's gguf-split writes and the only one llama.cpp follows to find the
  other parts.
- A vision projector ("mmproj") is loaded beside a model and is useless alone. Repos spell
  it `mmproj-model-f16.gguf` as often as `llava-v1.6-7b-mmproj-f16.gguf`, so the word
  anywhere in the file's name marks one.
- A download in progress is `<name>.part` beside its sidecar `<name>.part.json`.

Names may be bare file names, local paths or paths inside a Hub repo: only the last part
(after the final / or the OS's separator) is read, and the rest is kept as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

SPLIT_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
PART_SUFFIX = ".part"  # the bytes downloaded so far
SIDECAR_SUFFIX = ".part.json"  # what the download is (URL, commit, size, sha256)
# Everything a download may leave beside a model file (".json": sidecars of early versions).
LEFTOVER_SUFFIXES = (PART_SUFFIX, SIDECAR_SUFFIX, ".json")


@dataclass(frozen=True)
class SplitName:
    """The parts of a shard's name: `prefix-{index:05d}-of-{count:05d}.gguf`."""

    prefix: str  # the name before the numbers, with any folder in front of it
    index: int  # 1-based, as in the name
    count: int

    def shard(self, index: int) -> str:
        """The name of another shard of the same set."""
        return f"{self.prefix}-{index:05d}-of-{self.count:05d}.gguf"

    @property
    def names(self) -> tuple[str, ...]:
        """Every shard's name, in order."""
        return tuple(self.shard(i) for i in range(1, self.count + 1))


def base_name(name: str | os.PathLike[str]) -> str:
    """The last part of a local path or a Hub repo path."""
    return re.split(r"[/\\]", os.fspath(name))[-1]


def split_name(name: str | os.PathLike[str]) -> SplitName | None:
    """The shard set `name` belongs to, or None when it is not a shard's name (or its
    numbers cannot be right: part 0, or part 4 of 3)."""
    name = os.fspath(name)
    base = base_name(name)
    m = SPLIT_RE.match(base)
    if not m:
        return None
    index, count = int(m["no"]), int(m["count"])
    if count < 1 or not 1 <= index <= count:
        return None
    return SplitName(name[: len(name) - len(base)] + m["prefix"], index, count)


def model_stem(name: str | os.PathLike[str]) -> str:
    """The model's name without folder, shard numbers or `.gguf`: "Qwen3-8B-Q4_K_M"."""
    base = base_name(name)
    m = SPLIT_RE.match(base)
    if m:
        return m["prefix"]
    return base[:-5] if base.lower().endswith(".gguf") else base


def is_mmproj(name: str | os.PathLike[str]) -> bool:
    """A vision projector: loaded beside a model, never a model by itself."""
    return "mmproj" in base_name(name).lower()


@dataclass(frozen=True)
class ShardGroup:
    """One model among a list of names: a single file, or a split set."""

    first: str  # the name to load: the first shard, even when that one is absent
    expected: tuple[str, ...]  # every name the set needs, in order (just `first` if single)
    present: tuple[str, ...]  # the names of the set that were in the list, in order

    @property
    def count(self) -> int:
        return len(self.expected)

    @property
    def complete(self) -> bool:
        return len(self.present) == len(self.expected)


def group_shards(names: Iterable[str]) -> list[ShardGroup]:
    """The models among `names`: each split set once, everything else as itself. Sorted by
    the first name."""
    groups: list[ShardGroup] = []
    sets: dict[tuple[str, ...], set[str]] = {}
    for name in names:
        split = split_name(name)
        if split is None or name not in split.names:  # an odd spelling ("-OF-"): as itself
            groups.append(ShardGroup(name, (name,), (name,)))
        else:
            sets.setdefault(split.names, set()).add(name)
    for expected, present in sets.items():
        groups.append(ShardGroup(expected[0], expected, tuple(n for n in expected if n in present)))
    return sorted(groups, key=lambda g: g.first)
