"""Resources: every file present and valid, the themes readable and applied cleanly, and the
same lookup working from the checkout and from an installed wheel."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app import resources

REPO = Path(__file__).resolve().parents[1]
RES = REPO / "resources"

UI_ICONS = (
    "open", "load", "unload", "stop", "send", "settings", "new-chat", "copy", "delete",
    "edit", "regenerate", "pin", "search", "download", "pause", "resume", "cancel", "folder",
    "reveal", "warning", "error", "info", "graph", "chip", "memory", "check",
)  # fmt: skip
HICOLOR_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
PALETTE_KEYS = (
    "background", "surface", "text", "muted", "accent", "danger", "warning", "success",
    "border", "code_background",
)  # fmt: skip
# Text colour -> the backgrounds it is drawn on (WCAG AA for normal text: 4.5:1).
TEXT_ON = {
    "text": (
        "background", "surface", "surface_alt", "pressed", "code_background", "selection",
        "bubble_user", "danger_bg", "warning_bg", "success_bg", "info_bg", "accent_soft",
    ),
    "muted": ("background", "surface", "surface_alt"),
    "accent": ("background", "surface"),
    "danger": ("background", "surface", "danger_bg"),
    "warning": ("background", "surface", "warning_bg"),
    "success": ("background", "surface", "success_bg"),
    "info": ("background", "surface", "info_bg"),
    "on_accent": ("accent", "accent_hover"),
    "tooltip_text": ("tooltip_bg",),
}  # fmt: skip


def _load_script(name: str):
    """Import one of the scripts in resources/ (they are not a package in the checkout)."""
    spec = importlib.util.spec_from_file_location(f"_hearth_{name}", RES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two "#RRGGBB" colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# ---- finding resources -------------------------------------------------------------------


def test_checkout_resources_are_found():
    assert resources.resources_root() == RES
    assert resources.resource_path("themes", "dark.qss") == RES / "themes" / "dark.qss"
    # The wheel's package folder exists in the checkout only as a placeholder, never taken.
    assert (REPO / "app" / "_resources").is_dir()
    assert not (REPO / "app" / "_resources" / "themes").exists()


def test_a_missing_resource_is_named():
    with pytest.raises(resources.ResourceNotFoundError, match=r"themes/nope\.qss.*reinstall"):
        resources.resource_path("themes", "nope.qss")
    with pytest.raises(resources.ResourceNotFoundError, match="no-such-icon"):
        resources.ui_icon_path("no-such-icon")


def test_a_missing_resources_folder_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "_candidates", lambda: [("wheel", tmp_path / "nowhere")])
    resources.resources_root.cache_clear()
    try:
        with pytest.raises(resources.ResourceNotFoundError, match=r"looked in wheel: .*nowhere"):
            resources.resource_path("themes", "dark.qss")
    finally:
        monkeypatch.undo()
        resources.resources_root.cache_clear()


def test_a_frozen_bundle_is_looked_in_first(monkeypatch, tmp_path):
    bundled = tmp_path / "resources"
    (bundled / "themes").mkdir(parents=True)
    (bundled / "themes" / "palette.json").write_text("{}")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    resources.resources_root.cache_clear()
    try:
        assert resources.resources_root() == bundled
    finally:
        monkeypatch.undo()
        resources.resources_root.cache_clear()


def test_finding_resources_loads_no_qt():
    # The CLI and the build scripts use app.resources; it must not pull Qt in with it.
    code = (
        "import sys, app.resources as r; r.theme_palette('dark'); r.ui_icon_path('send'); "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_theme_helpers_reject_unknown_names():
    with pytest.raises(ValueError, match="sepia"):
        resources.theme_stylesheet("sepia")
    with pytest.raises(ValueError, match="sepia"):
        resources.theme_palette("sepia")


# ---- files present and valid -------------------------------------------------------------


def test_every_referenced_resource_exists():
    for name in UI_ICONS:
        assert resources.ui_icon_path(name).is_file()
    for parts in (
        ("icons", "hearth.svg"),
        ("icons", "hearth.ico"),
        ("themes", "palette.json"),
        ("themes", "light.qss"),
        ("themes", "dark.qss"),
        ("linux", "hearth.desktop"),
        ("linux", "hearth-gguf.xml"),
    ):
        assert resources.resource_path(*parts).is_file()
    assert tuple(resources.app_icon_paths()) == HICOLOR_SIZES
    # Every image a stylesheet names, in the folder its search-path prefix points at.
    for mode in resources.THEMES:
        for prefix, name in re.findall(r"url\((\w+):([\w.-]+)\)", resources.theme_stylesheet(mode)):
            assert prefix == f"hearth{mode}"
            assert (RES / "themes" / mode / name).is_file(), name


def test_ui_icons_are_single_colour_24px_svgs():
    found = sorted(p.stem for p in (RES / "icons" / "ui").glob("*.svg"))
    assert found == sorted(UI_ICONS), "add new icons to UI_ICONS"
    for name in UI_ICONS:
        text = resources.ui_icon_path(name).read_text()
        assert 'viewBox="0 0 24 24"' in text, name
        # Tinting replaces the colour, so any colour would do; one colour keeps them honest.
        colours = set(re.findall(r'(?:fill|stroke)="([^"]+)"', text)) - {"none"}
        assert colours == {"#000000"}, (name, colours)
        assert "currentColor" not in text


def test_every_svg_renders(qapp):
    from PySide6.QtSvg import QSvgRenderer

    svgs = sorted(RES.rglob("*.svg"))
    assert len(svgs) >= len(UI_ICONS) + 1 + 2 * 8
    for svg in svgs:
        assert QSvgRenderer(str(svg)).isValid(), svg


def test_app_icon_pngs_have_their_sizes(qapp):
    from PySide6.QtGui import QImage

    for size, path in resources.app_icon_paths().items():
        image = QImage(str(path))
        assert (image.width(), image.height()) == (size, size), path
        assert image.hasAlphaChannel()
        # The corners are transparent: the tile is rounded, not a square on a background.
        assert image.pixelColor(0, 0).alpha() == 0


def test_ico_holds_every_size(qapp):
    from PySide6.QtGui import QImageReader

    data = resources.resource_path("icons", "hearth.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind, count) == (0, 1, len(ICO_SIZES))
    reader = QImageReader(str(resources.resource_path("icons", "hearth.ico")))
    sizes = []
    for index in range(reader.imageCount()):
        reader.jumpToImage(index)
        sizes.append(reader.read().width())
    assert sizes == list(ICO_SIZES)


def test_icns_for_the_mac_bundle(qapp, tmp_path):
    from PySide6.QtGui import QImageReader

    render_icons = _load_script("render_icons")
    target = tmp_path / "hearth.icns"
    render_icons.write_icns(target)
    assert target.read_bytes()[:4] == b"icns"
    assert struct.unpack_from(">I", target.read_bytes(), 4)[0] == target.stat().st_size
    reader = QImageReader(str(target))
    assert reader.imageCount() == len(render_icons.ICNS_TYPES)
    reader.jumpToImage(reader.imageCount() - 1)
    assert reader.read().width() == 1024


def test_generated_theme_files_are_up_to_date():
    build_themes = _load_script("build_themes")
    for path, text in build_themes.build().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO)} is stale: run .venv/bin/python resources/build_themes.py"
        )


def test_palette_has_both_modes_and_readable_text():
    palette = json.loads(resources.resource_path("themes", "palette.json").read_text())
    assert set(palette) == set(resources.THEMES)
    assert set(palette["light"]) == set(palette["dark"])
    for mode, colours in palette.items():
        assert set(PALETTE_KEYS) <= set(colours), mode
        for name, value in colours.items():
            assert re.fullmatch(r"#[0-9A-F]{6}", value), (mode, name, value)
        for fg, backgrounds in TEXT_ON.items():
            for bg in backgrounds:
                ratio = contrast(colours[fg], colours[bg])
                assert ratio >= 4.5, f"{mode}: {fg} on {bg} is {ratio:.2f}:1"
        # WCAG 1.4.11: the outline of a control stands out 3:1 from what is around it.
        for bg in ("background", "surface"):
            assert contrast(colours["border_strong"], colours[bg]) >= 3.0, (mode, bg)


def test_desktop_entry():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(resources.resource_path("linux", "hearth.desktop"), encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Name"] == "Hearth"
    assert desktop["Exec"] == "hearth %F"
    assert desktop["Icon"] == "hearth"
    assert "application/x-gguf" in desktop["MimeType"].split(";")
    # One main category, or menus list Hearth twice (desktop-file-validate's hint).
    main = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics",
            "Network", "Office", "Science", "Settings", "System", "Utility"}  # fmt: skip
    assert len(main & set(desktop["Categories"].split(";"))) == 1
    assert desktop["StartupWMClass"] == "Hearth"  # Qt's WM_CLASS class is the app name
    assert "GGUF" in desktop["Keywords"].split(";")
    assert desktop["Terminal"] == "false"


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils absent")
def test_desktop_entry_validates():
    path = resources.resource_path("linux", "hearth.desktop")
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout


def test_mime_type_for_gguf():
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    root = ET.parse(resources.resource_path("linux", "hearth-gguf.xml")).getroot()
    (mime,) = root.findall("m:mime-type", ns)
    assert mime.get("type") == "application/x-gguf"
    assert mime.find("m:comment", ns).text
    assert [g.get("pattern") for g in mime.findall("m:glob", ns)] == ["*.gguf"]
    (match,) = mime.findall("m:magic/m:match", ns)
    assert (match.get("type"), match.get("offset"), match.get("value")) == ("string", "0", "GGUF")


@pytest.mark.skipif(not shutil.which("update-mime-database"), reason="shared-mime-info absent")
def test_mime_type_builds_into_a_database(tmp_path):
    (tmp_path / "packages").mkdir()
    shutil.copy(resources.resource_path("linux", "hearth-gguf.xml"), tmp_path / "packages")
    subprocess.run(["update-mime-database", str(tmp_path)], check=True, capture_output=True)
    assert "application/x-gguf:*.gguf" in (tmp_path / "globs2").read_text()
    magic = (tmp_path / "magic").read_bytes()
    assert b"[50:application/x-gguf]" in magic and b"GGUF" in magic


# ---- themes applied ------------------------------------------------------------------------


@pytest.fixture
def themed(qapp, monkeypatch):
    """The application, put back as it was after the test themed it."""
    from PySide6.QtGui import QPalette

    from app.ui import theme

    existing = qapp.findChild(theme.ThemeManager, "hearth-theme-manager")
    style, palette, sheet = qapp.style().name(), QPalette(qapp.palette()), qapp.styleSheet()
    monkeypatch.setattr(theme, "_current", None)
    yield qapp
    manager = qapp.findChild(theme.ThemeManager, "hearth-theme-manager")
    if manager is not None and manager is not existing:
        import shiboken6

        shiboken6.delete(manager)
    qapp.setStyleSheet(sheet)
    qapp.setStyle(style)
    qapp.setPalette(palette)


def _gallery(qapp):
    """One of every widget the stylesheets style, in every role, shown and painted."""
    from PySide6.QtCore import QSize, Qt
    from PySide6.QtGui import QStandardItem, QStandardItemModel
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QDockWidget,
        QDoubleSpinBox,
        QFrame,
        QGroupBox,
        QLabel,
        QLineEdit,
        QListView,
        QMainWindow,
        QMenu,
        QPlainTextEdit,
        QProgressBar,
        QPushButton,
        QRadioButton,
        QScrollBar,
        QSlider,
        QSpinBox,
        QSplitter,
        QTabWidget,
        QTextBrowser,
        QTextEdit,
        QToolButton,
        QTreeView,
        QVBoxLayout,
        QWidget,
    )

    from app.ui.theme import set_role, set_style_property, ui_icon

    window = QMainWindow()
    toolbar = window.addToolBar("main")
    toolbar.setIconSize(QSize(20, 20))
    for name in UI_ICONS:
        toolbar.addAction(ui_icon(name), name)
    window.menuBar().addMenu("File").addAction(ui_icon("open"), "Open")
    window.statusBar().showMessage("Ready")
    dock = QDockWidget("Monitor", window)
    dock.setWidget(QLabel("RAM"))
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    splitter = QSplitter()
    window.setCentralWidget(splitter)
    page = QWidget()
    layout = QVBoxLayout(page)
    splitter.addWidget(page)
    splitter.addWidget(QTextBrowser())
    for role in ("banner-error", "banner-warning", "banner-info", "banner-success", "card",
                 "bubble-user", "bubble-assistant"):  # fmt: skip
        frame = QFrame()
        set_role(frame, role)
        QVBoxLayout(frame).addWidget(QLabel(role))
        layout.addWidget(frame)
    for role in ("heading", "muted", "error", "warning", "success"):
        label = QLabel(role)
        set_role(label, role)
        layout.addWidget(label)
    for role in (None, "primary", "danger"):
        for enabled in (True, False):
            button = QPushButton(ui_icon("load"), str(role))
            set_role(button, role)
            button.setEnabled(enabled)
            layout.addWidget(button)
    tool = QToolButton()
    tool.setIcon(ui_icon("send"))
    tool.setCheckable(True)
    tool.setChecked(True)
    layout.addWidget(tool)
    for widget in (QLineEdit("x"), QSpinBox(), QDoubleSpinBox(), QComboBox(), QPlainTextEdit()):
        layout.addWidget(widget)
        set_style_property(widget, "invalid", True)
    combo = QComboBox()
    combo.addItems(["f16", "q8_0"])
    combo.setEnabled(False)
    layout.addWidget(combo)
    for widget in (QTextEdit(), QPlainTextEdit()):
        set_role(widget, "code")
        layout.addWidget(widget)
    for checked in (Qt.CheckState.Unchecked, Qt.CheckState.Checked, Qt.CheckState.PartiallyChecked):
        for enabled in (True, False):
            box = QCheckBox("check")
            box.setTristate(True)
            box.setCheckState(checked)
            box.setEnabled(enabled)
            layout.addWidget(box)
    radio = QRadioButton("radio")
    radio.setChecked(True)
    layout.addWidget(radio)
    group = QGroupBox("group")
    group.setCheckable(True)
    layout.addWidget(group)
    for orientation in (Qt.Orientation.Horizontal, Qt.Orientation.Vertical):
        layout.addWidget(QSlider(orientation))
        layout.addWidget(QScrollBar(orientation))
    for role in (None, "slim"):
        bar = QProgressBar()
        bar.setValue(40)
        set_role(bar, role)
        layout.addWidget(bar)
    tabs = QTabWidget()
    tabs.addTab(QWidget(), "Chat")
    tabs.addTab(QWidget(), "Models")
    layout.addWidget(tabs)
    model = QStandardItemModel()
    for text in ("a.gguf", "b.gguf"):
        item = QStandardItem(ui_icon("chip"), text)
        item.setCheckable(True)
        model.appendRow(item)
    for view in (QListView(), QTreeView()):
        view.setModel(model)
        view.setCurrentIndex(model.index(0, 0))
        layout.addWidget(view)
    window.resize(900, 1400)
    window.show()
    qapp.processEvents()
    window.grab()  # paints everything: stylesheet images load here, and complain here
    menu = QMenu()
    menu.addAction(ui_icon("copy"), "Copy").setCheckable(True)
    menu.grab()
    return window


@pytest.mark.parametrize("mode", resources.THEMES)
def test_theme_applies_without_qt_warnings(themed, mode):
    # qt_log_level_fail = WARNING: a stylesheet Qt cannot parse, or an image it cannot
    # find, fails the test here.
    from PySide6.QtGui import QPalette

    from app.ui.theme import apply_theme, current_theme

    apply_theme(themed, mode)
    assert current_theme() == mode
    assert themed.styleSheet() == resources.theme_stylesheet(mode)
    colours = resources.theme_palette(mode)
    assert themed.palette().color(QPalette.ColorRole.Window).name().upper() == colours["background"]
    window = _gallery(themed)
    window.close()


def test_system_mode_follows_the_os(themed, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    from app.ui import theme

    switches = []
    manager = theme.apply_theme(themed)  # "system" by default
    manager.theme_changed.connect(switches.append)
    assert manager.mode == "system"
    assert theme.current_theme() == theme.system_theme()
    # The offscreen platform cannot change its scheme; stand in for the OS.
    monkeypatch.setattr(theme, "system_theme", lambda: "dark")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert theme.current_theme() == "dark"
    assert themed.styleSheet() == resources.theme_stylesheet("dark")
    # A fixed mode stays put when the OS changes.
    theme.apply_theme(themed, "light")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert theme.current_theme() == "light"
    assert switches == ["dark", "light"]
    assert theme.apply_theme(themed, "light") is manager
    with pytest.raises(ValueError, match="sepia"):
        theme.apply_theme(themed, "sepia")


def _ink(pixmap) -> set[str]:
    """The colours of a pixmap's opaque pixels."""
    image = pixmap.toImage()
    return {
        image.pixelColor(x, y).name().upper()
        for x in range(image.width())
        for y in range(image.height())
        if image.pixelColor(x, y).alpha() == 255
    }


def test_ui_icons_follow_the_theme(themed):
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QIcon

    from app.ui.theme import apply_theme, ui_icon

    light, dark = resources.theme_palette("light"), resources.theme_palette("dark")
    icon = ui_icon("stop")
    apply_theme(themed, "light")
    assert _ink(icon.pixmap(24, 24)) == {light["text"]}
    assert _ink(icon.pixmap(24, 24, QIcon.Mode.Disabled)) == {light["disabled"]}
    danger = ui_icon("stop", "danger")
    assert _ink(danger.pixmap(24, 24)) == {light["danger"]}
    apply_theme(themed, "dark")  # the same QIcon objects, now drawn for the dark theme
    assert _ink(icon.pixmap(24, 24)) == {dark["text"]}
    assert _ink(danger.pixmap(24, 24)) == {dark["danger"]}
    sharp = icon.pixmap(QSize(24, 24), 2.0)
    assert (sharp.width(), sharp.height(), sharp.devicePixelRatio()) == (48, 48, 2.0)
    with pytest.raises(resources.ResourceNotFoundError):
        ui_icon("no-such-icon")
    with pytest.raises(KeyError):
        ui_icon("stop", "no-such-colour")


def test_a_role_set_after_show_restyles(themed, qtbot):
    from PySide6.QtWidgets import QFrame

    from app.ui.theme import apply_theme, set_role

    apply_theme(themed, "light")
    frame = QFrame()
    qtbot.addWidget(frame)
    frame.resize(80, 40)
    frame.show()
    set_role(frame, "banner-error")
    colour = frame.grab().toImage().pixelColor(40, 20).name().upper()
    assert colour == resources.theme_palette("light")["danger_bg"]


def test_app_icon_has_every_size(qapp):
    from app.ui.theme import app_icon

    sizes = {(s.width(), s.height()) for s in app_icon().availableSizes()}
    assert sizes == {(n, n) for n in HICOLOR_SIZES}


# ---- an installed wheel --------------------------------------------------------------------


@pytest.mark.slow
def test_installed_wheel_finds_its_resources(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
    # Build from a copy, so the build leaves no build/ or egg-info behind in the checkout.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("app", "resources"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # No build isolation: the venv's setuptools builds it, so no index is needed (offline).
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels)]
    subprocess.run(
        [*pip, *build, str(source)], check=True, capture_output=True, cwd=tmp_path, timeout=240
    )
    (wheel,) = wheels.glob("hearth-*.whl")
    install = ["install", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run(
        [*pip, *install, str(wheel)], check=True, capture_output=True, cwd=tmp_path, timeout=240
    )
    # -S: no site-packages, so neither the checkout nor its editable install is importable;
    # app can only come from the installed copy.
    probe = (
        "import json, app, app.resources as r; print(json.dumps({'app': app.__file__, "
        "'root': str(r.resources_root()), 'qss': str(r.resource_path('themes', 'dark.qss')), "
        "'icons': [str(r.ui_icon_path(n)) for n in " + repr(UI_ICONS) + "], "
        "'png': {k: str(v) for k, v in r.app_icon_paths().items()}, "
        "'light': r.theme_palette('light')['background']}))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = json.loads(result.stdout)
    installed = target.resolve()
    assert Path(found["app"]).resolve().is_relative_to(installed)
    assert Path(found["root"]) == installed / "app" / "_resources"
    assert Path(found["qss"]) == installed / "app" / "_resources" / "themes" / "dark.qss"
    assert len(found["icons"]) == len(UI_ICONS)
    assert sorted(int(k) for k in found["png"]) == list(HICOLOR_SIZES)
    # Everything the app reads at run time made it into the wheel, theme images included.
    shipped = installed / "app" / "_resources"
    for path in RES.rglob("*"):
        if path.suffix in {".svg", ".png", ".ico", ".qss", ".json", ".desktop", ".xml"}:
            assert (shipped / path.relative_to(RES)).is_file(), path.relative_to(RES)
