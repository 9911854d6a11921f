"""Before the window opens on Linux: are the system libraries Qt's platform plugin needs there?

Without them Qt prints a line about a plugin that "could not be loaded" and aborts the
process (a core dump, from a desktop launcher nothing at all). Hearth asks `ldd` about the
plugin first and, when something is missing, says which libraries, which Debian/Ubuntu
packages hold them and the command that installs them, then exits 1.

The same check serves `./dev.sh`: `python -m app.platform_libs packages xcb` prints the
packages to install, one a line. The package names follow Debian's naming policy (the
soname's name, lower-cased, then its major version, with a hyphen between two digits), so
no list of libraries has to be kept in step with Qt's.

Imports nothing from Qt: PySide6's files are found on disk, and nothing is loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Where a soname's package is not the policy's spelling (glibc's libraries, a few others).
_PACKAGE_EXCEPTIONS = {
    "libc.so.6": "libc6", "libm.so.6": "libc6", "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6", "librt.so.1": "libc6", "libresolv.so.2": "libc6",
    "libz.so.1": "zlib1g", "libgcc_s.so.1": "libgcc-s1", "libglib-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
}  # fmt: skip
_SONAME_RE = re.compile(r"^(?P<name>.+?)\.so\.(?P<major>\d+)")
_NOT_FOUND_RE = re.compile(r"^\s*(?P<soname>\S+)\s+=>\s+not found", re.MULTILINE)
# The platform plugins Hearth can check, by the name QT_QPA_PLATFORM gives them.
PLUGIN_FILES = {"xcb": "libqxcb.so", "offscreen": "libqoffscreen.so"}


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships `soname` ("libxcb-cursor.so.0" -> "libxcb-cursor0")."""
    if soname in _PACKAGE_EXCEPTIONS:
        return _PACKAGE_EXCEPTIONS[soname]
    if soname.startswith("ld-linux"):
        return "libc6"
    m = _SONAME_RE.match(soname)
    if not m:
        return soname.lower()
    name, major = m["name"].lower(), m["major"]
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


class _Ldd:
    """`ldd BINARY` running in the background; `missing()` waits for its answer."""

    def __init__(self, binary: str | os.PathLike[str]) -> None:
        ldd = shutil.which("ldd")
        self._proc = None
        if ldd is not None:
            try:
                self._proc = subprocess.Popen(
                    [ldd, os.fspath(binary)], stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True,
                )  # fmt: skip
            except OSError:
                self._proc = None

    def missing(self) -> list[str]:
        """The sonames ldd says are not found (empty when there is no ldd to ask)."""
        if self._proc is None:
            return []
        try:
            out, _ = self._proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return []
        return sorted(set(_NOT_FOUND_RE.findall(out or "")))


def missing_libraries(binary: str | os.PathLike[str]) -> list[str]:
    """The shared libraries `binary` (or a library it loads) needs and the system lacks,
    as `ldd` reports them. Empty when all are there, or when there is no ldd to ask."""
    return _Ldd(binary).missing()


def requested_platform(environ: dict[str, str] | None = None) -> str | None:
    """The platform plugin Qt will try first on Linux, or None elsewhere."""
    env = os.environ if environ is None else environ
    if sys.platform != "linux":
        return None
    wanted = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if wanted:
        return wanted
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def plugin_path(platform: str, environ: dict[str, str] | None = None) -> Path | None:
    """The plugin file Qt loads for `platform` (QT_PLUGIN_PATH first, as Qt does; then
    PySide6's own plugins), or None when it is not one Hearth checks or is not there."""
    env = os.environ if environ is None else environ
    name = PLUGIN_FILES.get(platform)
    if name is None:
        return None
    roots = [Path(p) for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    spec = _pyside_dir()
    if spec is not None:
        roots.append(spec / "Qt" / "plugins")
    for root in roots:
        candidate = root / "platforms" / name
        if candidate.is_file():
            return candidate
    return None


def _pyside_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class MissingLibraries:
    """What stops a platform plugin from loading, and how to fix it."""

    platform: str
    plugin: Path
    sonames: tuple[str, ...]

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted({debian_package(s) for s in self.sonames}))

    def message(self) -> str:
        """Sentences for the terminal: what is missing, and the command that installs it."""
        libs = ", ".join(self.sonames)
        what = "X11" if self.platform == "xcb" else f"'{self.platform}'"
        text = (
            f"Hearth cannot open its window: Qt's {what} platform plugin ({self.plugin.name}) "
            f"needs {len(self.sonames)} system "
            f"{'library' if len(self.sonames) == 1 else 'libraries'} this machine lacks: "
            f"{libs}.\n"
        )
        command = f"sudo apt-get install {' '.join(self.packages)}"
        if shutil.which("apt-get"):
            return text + f"Install them with:\n    {command}\nthen start Hearth again."
        return (
            text + "Install the packages that provide them with your package manager "
            f"(on Debian or Ubuntu: {command}), then start Hearth again."
        )


class PendingCheck:
    """A check under way: ldd runs while the caller imports Qt; `result()` waits for it."""

    def __init__(self, platform: str | None = None) -> None:
        self.platform = platform or requested_platform()
        self.plugin = plugin_path(self.platform) if self.platform else None
        self._ldd = _Ldd(self.plugin) if self.plugin is not None else None

    def result(self) -> MissingLibraries | None:
        if self._ldd is None:
            return None
        missing = self._ldd.missing()
        return MissingLibraries(self.platform, self.plugin, tuple(missing)) if missing else None


def check(platform: str | None = None) -> MissingLibraries | None:
    """What the platform plugin Qt will load lacks, or None when nothing is missing (or the
    platform is not one Hearth checks, or it is not on Linux)."""
    return PendingCheck(platform).result()


def display_problem(
    platform: str | None = None, environ: dict[str, str] | None = None
) -> str | None:
    """A sentence when the X11 platform is wanted and there is no display to open it on
    (Qt would abort with "could not connect to display")."""
    env = os.environ if environ is None else environ
    platform = platform or requested_platform(env)
    if platform != "xcb" or env.get("DISPLAY"):
        return None
    return (
        "Hearth cannot open its window: there is no X display (DISPLAY is not set). Start it "
        "from a desktop session, or use its commands without a window (hearth --help)."
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m app.platform_libs packages [PLATFORM]`: the packages to install for the
    platform plugin, one a line (./dev.sh). `... package SONAME...`: "SONAME PACKAGE" lines
    (installer/linux/build.sh, for the .deb's Depends)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "packages":
        found = check(args[1] if len(args) > 1 else "xcb")
        for package in found.packages if found else ():
            print(package)
        return 0
    if args and args[0] == "package":
        for soname in args[1:]:
            print(soname, debian_package(soname))
        return 0
    print("usage: python -m app.platform_libs packages [xcb|offscreen] | package SONAME...",
          file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main())
