"""The graph's colours: the theme's palette (resources/themes/palette.json) when it is there,
the same colours built in otherwise, so a missing theme never leaves the graph blank."""

from __future__ import annotations

import logging

from PySide6.QtGui import QColor, QGuiApplication, QPalette

log = logging.getLogger(__name__)

# palette.json's keys the graph uses, with its values at the time of writing.
_BUILT_IN = {
    "light": {
        "background": "#FAF7F2", "surface": "#FFFFFF", "text": "#1F1A17", "muted": "#675E55",
        "accent": "#B93D0A", "danger": "#B91C1C", "warning": "#A04A06", "success": "#13733A",
        "info": "#1D4ED8", "border": "#E3DAD0", "border_strong": "#948678",
    },
    "dark": {
        "background": "#1A1512", "surface": "#231D19", "text": "#F3EDE7", "muted": "#B3A99F",
        "accent": "#FB923C", "danger": "#F87171", "warning": "#FBBF24", "success": "#4ADE80",
        "info": "#8AB4FF", "border": "#3A312B", "border_strong": "#7A6C60",
    },
}  # fmt: skip

# Which palette colour draws which series.
SERIES = {
    "ram.used": "info",
    "rss.hearth": "success",
    "rss.worker": "accent",
    "cpu.system": "info",
    "cpu.hearth": "success",
    "cpu.worker": "accent",
    "tps.gen": "accent",
    "tps.gen.request": "accent",
    "tps.prompt": "info",
    "ttft": "warning",
    "spec.acceptance": "success",
    "estimate": "muted",
    "marker": "muted",
}
# GPU i: the theme's "info" colour turned round the colour wheel by these fractions
# (purple, teal, magenta, olive from a blue), as the palette has no more distinct hues:
# its accent, warning and danger are all orange-reds.
GPU_HUE_TURNS = (0.15, -0.12, 0.3, -0.25)


def theme_name() -> str:
    """'light' or 'dark': the theme in force, or the application palette's when no theme
    module is available."""
    try:
        from app.ui.theme import current_theme

        return current_theme()
    except Exception:
        window = QGuiApplication.palette().color(QPalette.ColorRole.Window)
        return "dark" if window.lightness() < 128 else "light"


def palette() -> dict[str, str]:
    """The named colours of the theme in force."""
    name = theme_name()
    colours = dict(_BUILT_IN[name])
    try:
        from app import resources

        colours.update(resources.theme_palette(name))
    except Exception as e:  # resources not installed yet: the built-in copy is the same
        log.debug("graph colours: built-in palette (%s)", e)
    return colours


def series_colour(name: str, colours: dict[str, str]) -> QColor:
    """The colour of a series name (gpu<i>.* by GPU index, rpc<i>.* by remote device)."""
    if name.startswith("gpu"):
        index = int(name[3:].split(".", 1)[0])
        return gpu_colour(index, colours)
    if name.startswith("rpc"):  # a remote device: GPU hues turned from the warning colour
        index = int(name[3:].split(".", 1)[0])
        return gpu_colour(index, colours, base="warning")
    return QColor(colours[SERIES.get(name, "text")])


def gpu_colour(index: int, colours: dict[str, str], base: str = "info") -> QColor:
    """GPU `index`'s colour: distinct from the RAM, Hearth and engine curves in both themes
    (remote devices turn from `base` "warning" instead of "info")."""
    hue, sat, light, _ = QColor(colours[base]).getHslF()
    turn = GPU_HUE_TURNS[index % len(GPU_HUE_TURNS)]
    return QColor.fromHslF((hue + turn) % 1.0, sat, light)
