"""Hearth's look: the light and dark themes (following the OS by default) and tinted icons.

    manager = apply_theme(qapp)            # follow the OS; or mode="light" / "dark"
    manager.theme_changed.connect(...)     # "light" or "dark", after a switch
    button.setIcon(ui_icon("send"))        # the theme's text colour, whatever the theme
    set_role(frame, "banner-error")        # a QSS role (see resources/themes/hearth.qss.in)

A theme is three things applied together: the Fusion style, a QPalette built from
resources/themes/palette.json, and the matching stylesheet (light.qss or dark.qss). Fusion,
because it is the one style that draws everything from the palette on every OS; the native
Windows and macOS styles ignore parts of it, and a dark theme would come out half light.

UI icons are single-colour SVGs (resources/icons/ui). ui_icon() returns a QIcon whose
engine tints the SVG when Qt asks for a pixmap, with the colour of the theme in force at
that moment, so icons follow a theme switch without anyone setting them again. Pixmaps are
cached per icon, colour, size and device pixel ratio.
"""

from __future__ import annotations

import functools

from PySide6.QtCore import QByteArray, QDir, QObject, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QIcon,
    QIconEngine,
    QImage,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication, QWidget

import app.ui.qt  # noqa: F401  (pins QT_API for pyqtgraph and qasync)
from app import resources

MODES = ("system", "light", "dark")

# The theme in force ("light" or "dark"); None until apply_theme runs, and then icons and
# theme_color() use the OS's scheme.
_current: str | None = None


def system_theme() -> str:
    """The OS's colour scheme as a theme name; "light" when the OS does not say."""
    scheme = QGuiApplication.styleHints().colorScheme()
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


def current_theme() -> str:
    """The theme in force: "light" or "dark"."""
    return _current or system_theme()


def theme_color(name: str) -> QColor:
    """A named colour of the current theme (a palette.json key: "accent", "danger", ...)."""
    colours = resources.theme_palette(current_theme())
    if name not in colours:
        raise KeyError(f"no colour {name!r} in the {current_theme()} palette")
    return QColor(colours[name])


def build_palette(colours: dict[str, str]) -> QPalette:
    """A QPalette from a theme's named colours: what the stylesheet leaves to the style."""
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    palette = QPalette()
    for target, key in (
        (role.Window, "background"),
        (role.WindowText, "text"),
        (role.Base, "surface"),
        (role.AlternateBase, "surface_alt"),
        (role.Text, "text"),
        (role.PlaceholderText, "muted"),
        (role.Button, "surface"),
        (role.ButtonText, "text"),
        (role.BrightText, "on_accent"),
        (role.Highlight, "accent"),
        (role.HighlightedText, "on_accent"),
        (role.Link, "accent"),
        (role.LinkVisited, "accent_hover"),
        (role.ToolTipBase, "tooltip_bg"),
        (role.ToolTipText, "tooltip_text"),
        # Fusion's bevels and frame lines.
        (role.Light, "surface"),
        (role.Midlight, "surface_alt"),
        (role.Mid, "border"),
        (role.Dark, "border_strong"),
        (role.Shadow, "border_strong"),
        (role.Accent, "accent"),
    ):
        palette.setColor(target, QColor(colours[key]))
    for target, key in (
        (role.WindowText, "disabled"),
        (role.Text, "disabled"),
        (role.ButtonText, "disabled"),
        (role.PlaceholderText, "disabled"),
        (role.Base, "background"),
        (role.Button, "background"),
        (role.Highlight, "border_strong"),
    ):
        palette.setColor(group.Disabled, target, QColor(colours[key]))
    return palette


def register_image_paths() -> None:
    """Let stylesheets name theme images as url(hearthlight:check.svg) or url(hearthdark:...).

    A relative url() in a stylesheet resolves against the working directory, so the themes
    use Qt search-path prefixes (letters only, Qt insists) pointed at themes/<mode>/. One
    prefix per theme, not one for both, so a switch never shows the other theme's image
    from Qt's pixmap cache.
    """
    for name in resources.THEMES:
        QDir.setSearchPaths(f"hearth{name}", [str(resources.resource_path("themes", name))])


class ThemeManager(QObject):
    """Keeps the application's theme: the chosen mode, and the OS's scheme when following it.

    One per application (apply_theme creates it as a child of the QApplication). Emits
    theme_changed("light" | "dark") after each switch, for code that paints with
    theme_color() and must repaint.
    """

    theme_changed = Signal(str)

    def __init__(self, qapp: QApplication) -> None:
        super().__init__(qapp)
        self.setObjectName("hearth-theme-manager")
        self._qapp = qapp
        self._mode = "system"
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_style_hints_scheme_changed)

    @property
    def mode(self) -> str:
        """The chosen mode: "system", "light" or "dark"."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Choose a mode and apply the theme it resolves to."""
        if mode not in MODES:
            raise ValueError(f"unknown theme mode {mode!r}: expected one of {', '.join(MODES)}")
        self._mode = mode
        self._request_platform_scheme(mode)
        self._apply(system_theme() if mode == "system" else mode)

    def _request_platform_scheme(self, mode: str) -> None:
        # Qt 6.8+ can ask the platform for a scheme, which also turns the window's title bar
        # dark on Windows and macOS; older Qt keeps the OS's title bar.
        hints = QGuiApplication.styleHints()
        if not hasattr(hints, "setColorScheme"):
            return
        wanted = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(mode)
        if wanted is None:
            hints.unsetColorScheme()
        elif hints.colorScheme() != wanted:
            hints.setColorScheme(wanted)

    def _on_style_hints_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self._mode == "system":
            self._apply(system_theme())

    def _apply(self, name: str) -> None:
        global _current
        if name == _current and self._qapp.styleSheet():
            return
        _current = name
        register_image_paths()
        if self._qapp.style().name().lower() != "fusion":
            self._qapp.setStyle("Fusion")
        self._qapp.setPalette(build_palette(resources.theme_palette(name)))
        self._qapp.setStyleSheet(resources.theme_stylesheet(name))
        self.theme_changed.emit(name)


def apply_theme(qapp: QApplication, mode: str = "system") -> ThemeManager:
    """Theme the application and return its ThemeManager (created on the first call).

    mode "system" follows the OS's light/dark setting, now and when it changes while
    Hearth runs; "light" and "dark" fix the theme.
    """
    manager = qapp.findChild(ThemeManager, "hearth-theme-manager")
    if manager is None:
        manager = ThemeManager(qapp)
    manager.set_mode(mode)
    return manager


# ---- roles ----------------------------------------------------------------------------


def set_style_property(widget: QWidget, name: str, value: object) -> None:
    """Set a property the stylesheet selects on (role, invalid) and restyle the widget.

    Qt matches [property="value"] selectors when a widget is polished, so changing the
    property later has no visible effect until the widget is polished again.
    """
    widget.setProperty(name, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


def set_role(widget: QWidget, role: str | None) -> None:
    """Give a widget a stylesheet role: "primary", "banner-error", "card", "bubble-user", ..."""
    set_style_property(widget, "role", role)


# ---- icons ------------------------------------------------------------------------------


def app_icon() -> QIcon:
    """The Hearth app icon, with every PNG size so each place picks a sharp one."""
    icon = QIcon()
    for size, path in resources.app_icon_paths().items():
        icon.addFile(str(path), QSize(size, size))
    return icon


@functools.cache
def _svg_data(name: str) -> QByteArray:
    return QByteArray(resources.ui_icon_path(name).read_bytes())


@functools.lru_cache(maxsize=1024)
def tinted_pixmap(name: str, rgba: int, width: int, height: int, scale: float = 1.0) -> QPixmap:
    """A UI icon rendered at width x height (device-independent) pixels in one colour.

    Renders the SVG at the device's resolution, then paints the colour over it with
    CompositionMode_SourceIn, which keeps the SVG's alpha (its anti-aliased edges) and
    replaces every colour. Cached: the same icon at the same size is asked for on every
    repaint.
    """
    renderer = QSvgRenderer(_svg_data(name))
    image = QImage(
        round(width * scale), round(height * scale), QImage.Format.Format_ARGB32_Premultiplied
    )
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter, QRectF(image.rect()))
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
    painter.fillRect(image.rect(), QColor.fromRgba(rgba))
    painter.end()
    pixmap = QPixmap.fromImage(image)
    pixmap.setDevicePixelRatio(scale)
    return pixmap


class _TintedSvgIconEngine(QIconEngine):
    """Draws a monochrome SVG in the current theme's colour for the icon's mode."""

    def __init__(self, name: str, colour: str | QColor | None) -> None:
        super().__init__()
        self._name = name
        self._colour = colour

    def _rgba(self, mode: QIcon.Mode) -> int:
        if isinstance(self._colour, QColor):
            return self._colour.rgba()
        if mode == QIcon.Mode.Disabled:
            return theme_color("disabled").rgba()
        if mode == QIcon.Mode.Selected and self._colour is None:
            # On a selected row the background is the selection tint, where text stays.
            return theme_color("text").rgba()
        return theme_color(self._colour or "text").rgba()

    def scaledPixmap(
        self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float
    ) -> QPixmap:
        if size.isEmpty():
            return QPixmap()
        return tinted_pixmap(
            self._name, self._rgba(mode), size.width(), size.height(), float(scale)
        )

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        device = painter.device()
        scale = device.devicePixelRatioF() if device is not None else 1.0
        painter.drawPixmap(rect, self.scaledPixmap(rect.size(), mode, state, scale))

    def clone(self) -> QIconEngine:
        return _TintedSvgIconEngine(self._name, self._colour)

    def key(self) -> str:
        return "hearth-tinted-svg"

    def iconName(self) -> str:
        return self._name

    def isNull(self) -> bool:
        return False


def ui_icon(name: str, colour: str | QColor | None = None) -> QIcon:
    """A UI icon ("send", "stop", "warning", ...) tinted for the theme.

    colour None: the theme's text colour (disabled: its disabled colour). A palette key
    ("danger", "warning", "success", "accent"): that colour of whichever theme is in force,
    e.g. ui_icon("warning", "warning") in a banner. A QColor: that colour, always.
    Raises ResourceNotFoundError at once for a name with no SVG, rather than showing a blank.
    """
    resources.ui_icon_path(name)
    if isinstance(colour, str) and colour not in resources.theme_palette("light"):
        raise KeyError(f"no colour {colour!r} in the theme palette")
    return QIcon(_TintedSvgIconEngine(name, colour))
