"""The installers' file associations agree with each other, and the Linux packaging works.

Windows (Inno Setup) and macOS (Info.plist) cannot be built here: these tests parse them
for the entries that make a double-clicked .gguf open in Hearth, and check that every
platform names the same extension and MIME type as resources/linux/. The Linux scripts run
for real on a stand-in bundle (a shell script), so their logic is tested in seconds; the
real PyInstaller bundle is tests/installer/test_bundle.py (HEARTH_TEST_BUNDLE=1).
"""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app import __version__

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"
LINUX = REPO / "resources" / "linux"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
EXTENSION = "gguf"
MIME_TYPE = "application/x-gguf"


# --- Inno Setup ------------------------------------------------------------------------


def parse_iss(path: Path) -> dict[str, list]:
    """Sections of an Inno Setup script: [Setup]-style sections as {key: value} dicts,
    entry sections ([Files], [Registry]...) as lists of {parameter: value} dicts.

    Inno's syntax: `;` starts a comment line, `#` a preprocessor line; an entry is
    `Name: value; Name: "quoted; value"` with "" for a quote inside a quoted value."""
    defines = dict(re.findall(r'^#define\s+(\w+)\s+"([^"]*)"', path.read_text(), re.MULTILINE))
    sections: dict[str, list] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        line = re.sub(r"\{#(\w+)\}", lambda m: defines.get(m.group(1), m.group(0)), line)
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: a line before the first section: {raw!r}"
        if current is sections.get("Setup"):  # Key=Value directives
            key, _, value = line.partition("=")
            current.append({key.strip(): value.strip()})
        else:  # entries: Param: value; Param: "value"
            current.append(_iss_entry(line))
    return sections


def _iss_entry(line: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        name_end = line.index(":", i)
        name = line[i:name_end].strip()
        i = name_end + 1
        while i < n and line[i] == " ":
            i += 1
        if i < n and line[i] == '"':
            value, i = "", i + 1
            while True:
                j = line.index('"', i)
                value += line[i:j]
                if j + 1 < n and line[j + 1] == '"':  # "" inside quotes: one quote
                    value += '"'
                    i = j + 2
                    continue
                i = j + 1
                break
        else:
            j = line.find(";", i)
            j = n if j < 0 else j
            value, i = line[i:j].strip(), j
        params[name] = value
        i = line.find(";", i)
        i = n if i < 0 else i + 1
    return params


@pytest.fixture(scope="module")
def iss() -> dict[str, list]:
    return parse_iss(INSTALLER / "windows" / "hearth.iss")


def setup_value(iss, key: str) -> str:
    return next(e[key] for e in iss["Setup"] if key in e)


def test_iss_parser_reads_quotes_and_semicolons():
    entry = _iss_entry('Root: HKA; ValueData: """{app}\\x.exe"" ""%1"""; Flags: a b; Tasks: t')
    assert entry == {
        "Root": "HKA",
        "ValueData": '"{app}\\x.exe" "%1"',
        "Flags": "a b",
        "Tasks": "t",
    }
    assert _iss_entry('Name: "a; b"; X: y') == {"Name": "a; b", "X": "y"}


def test_windows_opens_gguf_files_with_hearth(iss):
    reg = iss["Registry"]

    def value(subkey: str, name: str = "") -> dict:
        hits = [e for e in reg if e["Subkey"] == subkey and e.get("ValueName") == name]
        assert len(hits) == 1, (subkey, name, hits)
        return hits[0]

    prog_id = value(rf"Software\Classes\.{EXTENSION}")["ValueData"]
    assert prog_id == "Hearth.GGUF"
    assert value(rf"Software\Classes\.{EXTENSION}", "Content Type")["ValueData"] == MIME_TYPE
    value(rf"Software\Classes\.{EXTENSION}\OpenWithProgids", prog_id)
    command = value(rf"Software\Classes\{prog_id}\shell\open\command")["ValueData"]
    assert command == '"{app}\\hearth.exe" "%1"'
    icon = value(rf"Software\Classes\{prog_id}\DefaultIcon")["ValueData"]
    assert icon.startswith("{app}\\hearth.exe")
    assert "uninsdeletekey" in value(rf"Software\Classes\{prog_id}")["Flags"]
    for entry in reg:
        assert entry["Root"] == "HKA", "per-user and all-users installs both need HKA"
    assert setup_value(iss, "ChangesAssociations") == "yes"


def test_windows_start_menu_desktop_icon_uninstaller_and_per_user_install(iss):
    icons = iss["Icons"]
    start = [e for e in icons if e["Name"].startswith("{autoprograms}")]
    assert start and start[0]["Filename"] == "{app}\\hearth.exe"
    desktop = [e for e in icons if e["Name"].startswith("{autodesktop}")]
    assert desktop and desktop[0]["Tasks"] == "desktopicon"
    task = next(e for e in iss["Tasks"] if e["Name"] == "desktopicon")
    assert "unchecked" in task["Flags"]  # optional, off unless asked for
    assert setup_value(iss, "Uninstallable") == "yes"
    assert setup_value(iss, "UninstallDisplayIcon") == "{app}\\hearth.exe"
    assert setup_value(iss, "PrivilegesRequired") == "lowest"
    assert "dialog" in setup_value(iss, "PrivilegesRequiredOverridesAllowed")
    files = iss["Files"][0]
    assert files["Source"] == "..\\..\\dist\\hearth\\*" and "recursesubdirs" in files["Flags"]
    icon = setup_value(iss, "SetupIconFile").replace("\\", "/")
    assert (INSTALLER / "windows" / icon).resolve() == REPO / "resources/icons/hearth.ico"


def test_the_spec_builds_the_executables_the_installers_name():
    spec = (INSTALLER / "hearth.spec").read_text()
    compile(spec, "hearth.spec", "exec")
    assert 'executable("hearth", ' in spec and 'executable("hearth-cli", ' in spec
    assert 'name="Hearth.app"' in spec and '"macos" / "Info.plist"' in spec
    assert 'COLLECT(*exes, a.binaries, a.datas, strip=False, upx=False, name="hearth")' in spec


# --- macOS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plist() -> dict:
    with open(INSTALLER / "macos" / "Info.plist", "rb") as f:
        return plistlib.load(f)


def test_macos_declares_and_opens_the_gguf_type(plist):
    (exported,) = plist["UTExportedTypeDeclarations"]
    uti = exported["UTTypeIdentifier"]
    assert uti == "org.hearth.gguf"
    tags = exported["UTTypeTagSpecification"]
    assert tags["public.filename-extension"] == [EXTENSION]
    assert tags["public.mime-type"] == [MIME_TYPE]
    assert "public.data" in exported["UTTypeConformsTo"]
    (doc,) = plist["CFBundleDocumentTypes"]
    assert doc["LSItemContentTypes"] == [uti]
    assert doc["LSHandlerRank"] in ("Owner", "Default", "Alternate")
    assert doc["CFBundleTypeRole"] in ("Viewer", "Editor")
    assert doc["CFBundleTypeIconFile"] == plist["CFBundleIconFile"] == "hearth.icns"
    assert plist["CFBundleIdentifier"] == "org.hearth.Hearth"
    assert plist["CFBundleShortVersionString"] == __version__


# --- Linux -------------------------------------------------------------------------------


def test_desktop_entry_and_mime_type_agree():
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read(LINUX / "hearth.desktop", encoding="utf-8")
    entry = desktop["Desktop Entry"]
    assert MIME_TYPE in entry["MimeType"].rstrip(";").split(";")
    assert entry["Exec"].split()[0] == "hearth" and "%F" in entry["Exec"].split()
    assert entry["Icon"] == "hearth"
    (mime,) = ET.parse(LINUX / "hearth-gguf.xml").getroot().findall(f"{MIME_NS}mime-type")
    assert mime.get("type") == MIME_TYPE
    globs = [g.get("pattern") for g in mime.findall(f"{MIME_NS}glob")]
    assert globs == [f"*.{EXTENSION}"]


def test_packaging_scripts_parse():
    for script in ("build.sh",):
        subprocess.run(["bash", "-n", str(INSTALLER / "linux" / script)], check=True)
    for script in ("install.sh", "uninstall.sh", "deb/postinst", "deb/postrm"):
        subprocess.run(["sh", "-n", str(INSTALLER / "linux" / script)], check=True)
        assert os.access(INSTALLER / "linux" / script, os.X_OK), script


@pytest.fixture
def fake_dist(tmp_path) -> Path:
    """A dist/ folder whose bundle is a shell script that answers --version."""
    bundle = tmp_path / "dist" / "hearth"
    (bundle / "_internal").mkdir(parents=True)
    exe = bundle / "hearth"
    exe.write_text(f'#!/bin/sh\necho "Hearth {__version__}"\n')
    exe.chmod(0o755)
    return tmp_path / "dist"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_archive_installs_into_a_home_and_uninstalls_cleanly(tmp_path, fake_dist):
    """build.sh's archive step and install.sh / uninstall.sh, on the stand-in bundle."""
    build = [str(INSTALLER / "linux" / "build.sh"), "--reuse-bundle", "--no-self-test",
             "--no-deb", "--dist", str(fake_dist), "--work", str(tmp_path / "work")]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=120)
    name = f"hearth-{__version__}-linux-{os.uname().machine}"
    (tmp_path / "unpacked").mkdir()
    subprocess.run(["tar", "-xzf", fake_dist / f"{name}.tar.gz", "-C", tmp_path / "unpacked"],
                   check=True)  # fmt: skip
    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    out = subprocess.run(["./install.sh"], cwd=tmp_path / "unpacked" / name, env=env,
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert f"installed Hearth {__version__}" in out
    local = home / ".local"
    launcher = local / "bin" / "hearth"
    assert launcher.is_symlink() and os.readlink(launcher) == str(local / "lib/hearth/hearth")
    assert subprocess.run([launcher, "--version"], capture_output=True, text=True).stdout.strip() == f"Hearth {__version__}"  # fmt: skip
    desktop = (local / "share/applications/hearth.desktop").read_text()
    assert f"Exec={launcher} %F" in desktop and f"TryExec={launcher}\n" in desktop
    for size in (16, 48, 256):
        assert (local / f"share/icons/hicolor/{size}x{size}/apps/hearth.png").is_file()
        assert (local / f"share/icons/hicolor/{size}x{size}/mimetypes/application-x-gguf.png").is_file()  # fmt: skip
    assert (local / "share/mime/packages/hearth-gguf.xml").is_file()
    if shutil.which("update-mime-database"):
        assert f"{MIME_TYPE}:*.{EXTENSION}" in (local / "share/mime/globs2").read_text()
    mimeapps = (home / ".config" / "mimeapps.list").read_text()
    if not shutil.which("xdg-mime"):  # install.sh wrote it itself
        assert f"[Default Applications]\n{MIME_TYPE}=hearth.desktop" in mimeapps

    # Installing again replaces the old version; an unrelated default stays.
    (home / ".config" / "mimeapps.list").write_text(mimeapps + "text/plain=gedit.desktop\n")
    subprocess.run(["./install.sh"], cwd=tmp_path / "unpacked" / name, env=env, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([local / "lib/hearth/uninstall.sh"], env=env, check=True, capture_output=True)
    left = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert all(p.startswith(("share/mime/", "share/applications/mimeinfo")) for p in left), left
    assert not (local / "lib" / "hearth").exists() and not launcher.exists()
    mimeapps = (home / ".config" / "mimeapps.list").read_text()
    assert "hearth.desktop" not in mimeapps and "text/plain=gedit.desktop" in mimeapps


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_deb_has_the_layout_and_control_fields(tmp_path, fake_dist):
    build = [str(INSTALLER / "linux" / "build.sh"), "--reuse-bundle", "--no-self-test",
             "--no-tar", "--fast", "--dist", str(fake_dist), "--work", str(tmp_path / "work")]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=120)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()  # fmt: skip
    deb = fake_dist / f"hearth_{__version__}_{arch}.deb"
    info = subprocess.run(["dpkg-deb", "-f", deb], check=True, capture_output=True, text=True).stdout  # fmt: skip
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    assert fields["Package"] == "hearth" and fields["Version"] == __version__
    assert re.search(r"libc6 \(>= 2\.\d+\)", fields["Depends"])
    contents = subprocess.run(["dpkg-deb", "-c", deb], check=True, capture_output=True, text=True).stdout  # fmt: skip
    for path in ("./opt/hearth/hearth", "./usr/bin/hearth -> /opt/hearth/hearth",
                 "./usr/share/applications/hearth.desktop",
                 "./usr/share/mime/packages/hearth-gguf.xml",
                 "./usr/share/icons/hicolor/256x256/apps/hearth.png",
                 "./usr/share/icons/hicolor/256x256/mimetypes/application-x-gguf.png"):  # fmt: skip
        assert path in contents, path
    scripts = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", deb, scripts], check=True)
    assert "update-mime-database" in (scripts / "postinst").read_text()
    assert "update-desktop-database" in (scripts / "postrm").read_text()
