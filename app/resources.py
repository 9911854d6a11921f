"""Find Hearth's resources (icons, themes, desktop files) wherever Hearth runs from.

The files live in `<repo>/resources` and travel three ways, and `resource_path` looks in
the same three places, first match wins:

1. a PyInstaller bundle: `sys._MEIPASS/resources` (the spec copies the folder there);
2. an installed wheel: `app/_resources` (pyproject maps the repo's `resources/` folder onto
   that package, so the files sit next to the code in site-packages);
3. a source checkout or an editable install: `<repo>/resources`, next to the `app` package.

A folder counts only if it holds `themes/palette.json`, so a stray folder named `resources`
on the path, or the empty `app/_resources` placeholder in a checkout, is never taken for
the real one.

Qt-free on purpose: the CLI, the engine-side tests and the build scripts can find a file
without loading Qt. The Qt helpers (QIcon, QSS applied to the application) live in
app/ui/theme.py.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

# A file every complete resources folder has.
_SENTINEL = ("themes", "palette.json")
THEMES = ("light", "dark")


class ResourceNotFoundError(FileNotFoundError):
    """A resource Hearth needs is missing from the installation."""


def _candidates() -> list[tuple[str, Path]]:
    """Where the resources folder may be, in the order it is looked for, with a label."""
    places = []
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        places.append(("bundle", Path(bundle) / "resources"))
    package = Path(__file__).resolve().parent
    places.append(("wheel", package / "_resources"))
    places.append(("checkout", package.parent / "resources"))
    return places


@functools.cache
def resources_root() -> Path:
    """The resources folder of this installation (cached: it cannot move while running)."""
    places = _candidates()
    for _label, root in places:
        if root.joinpath(*_SENTINEL).is_file():
            return root
    looked = "; ".join(f"{label}: {root}" for label, root in places)
    raise ResourceNotFoundError(
        f"Hearth's resources folder is missing (looked in {looked}). "
        "The installation is incomplete: reinstall Hearth, or in a source checkout "
        "restore the resources/ folder with git."
    )


def resource_path(*parts: str) -> Path:
    """The path of one resource, e.g. resource_path("themes", "dark.qss").

    Raises ResourceNotFoundError naming the file and the folder it was looked for in, so
    a broken installation says what is missing instead of failing later in Qt with an
    empty icon or an unstyled window.
    """
    if not parts:
        raise ValueError("resource_path() needs at least one path part")
    root = resources_root()
    path = root.joinpath(*parts)
    if not path.exists():
        raise ResourceNotFoundError(
            f"Hearth's resource {'/'.join(parts)} is missing from {root}. "
            "The installation is incomplete: reinstall Hearth."
        )
    return path


def theme_stylesheet(name: str) -> str:
    """The Qt stylesheet text of a theme ("light" or "dark")."""
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}: expected one of {', '.join(THEMES)}")
    return resource_path("themes", f"{name}.qss").read_text(encoding="utf-8")


@functools.cache
def _palette_file() -> dict[str, dict[str, str]]:
    return json.loads(resource_path("themes", "palette.json").read_text(encoding="utf-8"))


def theme_palette(name: str) -> dict[str, str]:
    """A theme's named colours ("background", "text", "accent", ... -> "#RRGGBB").

    For code that paints (charts, the Markdown view's CSS) so it matches the stylesheet.
    Returns a copy: callers may change it.
    """
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}: expected one of {', '.join(THEMES)}")
    return dict(_palette_file()[name])


def ui_icon_path(name: str) -> Path:
    """The monochrome SVG of a UI icon ("send", "stop", ...); see app.ui.theme.ui_icon."""
    return resource_path("icons", "ui", f"{name}.svg")


def app_icon_paths() -> dict[int, Path]:
    """The app icon's PNGs by pixel size (16 ... 512), for the window and the installers."""
    root = resource_path("icons", "hicolor")
    sizes = {}
    for png in root.glob("*x*/apps/hearth.png"):
        width, _, height = png.parent.parent.name.partition("x")
        if width.isdigit() and width == height:
            sizes[int(width)] = png
    if not sizes:
        raise ResourceNotFoundError(f"no app icon PNGs under {root}: reinstall Hearth.")
    return dict(sorted(sizes.items()))
