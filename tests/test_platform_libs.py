"""The check made before the window opens: the system libraries Qt's platform plugin needs.

The missing library is real: a plugin is compiled here against a library that is then
deleted, so `ldd` reports it exactly as it reports libxcb-cursor.so.0 on a fresh Debian.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import platform_libs
from app.platform_libs import debian_package, display_problem, missing_libraries

FAKE_LIB = "libxcb-hearth-test.so.0"


@pytest.fixture(scope="module")
def broken_plugin_dir(tmp_path_factory) -> Path:
    """platforms/libqxcb.so, linked against FAKE_LIB, which no longer exists."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or sys.platform != "linux":
        pytest.skip("needs a C compiler on Linux to build a plugin with a missing library")
    root = tmp_path_factory.mktemp("qt-plugins")
    build = root / "build"
    (root / "platforms").mkdir()
    build.mkdir()
    (build / "lib.c").write_text("int hearth_test_lib(void) { return 1; }\n")
    (build / "plugin.c").write_text(
        "int hearth_test_lib(void);\nint hearth_plugin(void) { return hearth_test_lib(); }\n"
    )
    subprocess.run([cc, "-shared", "-fPIC", f"-Wl,-soname,{FAKE_LIB}", "-o",
                    str(build / FAKE_LIB), str(build / "lib.c")], check=True)  # fmt: skip
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(root / "platforms" / "libqxcb.so"),
                    str(build / "plugin.c"), f"-L{build}", f"-l:{FAKE_LIB}"], check=True)  # fmt: skip
    shutil.rmtree(build)
    return root


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-cursor.so.0", "libxcb-cursor0"),
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        ("libxcb-render-util.so.0", "libxcb-render-util0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libX11-xcb.so.1", "libx11-xcb1"),
        ("libdbus-1.so.3", "libdbus-1-3"),
        ("libEGL.so.1", "libegl1"),
        ("libm.so.6", "libc6"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
    ],
)
def test_package_names_follow_debian_policy(soname, package):
    assert debian_package(soname) == package


def test_ldd_reports_the_deleted_library(broken_plugin_dir):
    assert missing_libraries(broken_plugin_dir / "platforms" / "libqxcb.so") == [FAKE_LIB]


def test_the_plugin_qt_would_load_is_checked(broken_plugin_dir, monkeypatch):
    monkeypatch.setenv("QT_PLUGIN_PATH", str(broken_plugin_dir))
    found = platform_libs.check("xcb")
    assert found is not None and found.sonames == (FAKE_LIB,)
    assert found.packages == ("libxcb-hearth-test0",)
    text = found.message()
    assert "X11 platform plugin (libqxcb.so)" in text and FAKE_LIB in text
    assert "apt-get install libxcb-hearth-test0" in text


def test_the_plugins_the_tests_run_on_lack_nothing():
    """The offscreen plugin loads in this very process: the check must agree."""
    assert platform_libs.plugin_path("offscreen") is not None
    assert platform_libs.check("offscreen") is None


def test_platform_and_display_come_from_the_environment(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert platform_libs.requested_platform({}) == "xcb"
    assert platform_libs.requested_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert platform_libs.requested_platform({"QT_QPA_PLATFORM": "xcb:foo;wayland"}) == "xcb"
    wayland = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}
    assert platform_libs.requested_platform(wayland) == "wayland"
    assert "DISPLAY is not set" in display_problem("xcb", {})
    assert display_problem("xcb", {"DISPLAY": ":0"}) is None
    assert display_problem("offscreen", {}) is None


def test_hearth_exits_1_with_the_command_instead_of_aborting(broken_plugin_dir):
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "QT_PLUGIN_PATH": str(broken_plugin_dir),
           "DISPLAY": ":99"}  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Hearth cannot open its window" in p.stderr and FAKE_LIB in p.stderr
    assert "Aborted" not in p.stderr and "Fatal" not in p.stderr


def test_dev_sh_lists_the_packages_to_install(broken_plugin_dir):
    env = {**os.environ, "QT_PLUGIN_PATH": str(broken_plugin_dir)}
    p = subprocess.run([sys.executable, "-m", "app.platform_libs", "packages", "xcb"], env=env,
                       capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert p.stdout.split() == ["libxcb-hearth-test0"]
