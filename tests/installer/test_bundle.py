"""The real Linux bundle: installer/linux/build.sh builds it (and the archive and .deb) into
a tmp dir, then the bundle's own `hearth --self-test` must pass, from the build folder and
after install.sh put it into a fresh HOME.

Takes minutes (PyInstaller on 2 cores), so it runs only with HEARTH_TEST_BUNDLE=1:

    HEARTH_TEST_BUNDLE=1 .venv/bin/python -m pytest -m bundle
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from app import __version__
from app.engine import testmodels

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        os.environ.get("HEARTH_TEST_BUNDLE") != "1" or not sys.platform.startswith("linux"),
        reason="builds the PyInstaller bundle (minutes): set HEARTH_TEST_BUNDLE=1",
    ),
]


def clean_env(**extra: str) -> dict[str, str]:
    """No trace of the source checkout or its virtualenv: the bundle must stand alone."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "QT_PLUGIN_PATH", "LD_LIBRARY_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HEARTH_")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    work = tmp_path_factory.mktemp("work")
    started = time.monotonic()
    command = [str(REPO / "installer/linux/build.sh"), "--fast", "--no-self-test",
               "--dist", str(dist), "--work", str(work)]  # fmt: skip
    if shutil.which("dpkg-deb") is None:
        command.append("--no-deb")
    subprocess.run(command, check=True, timeout=1100)
    print(f"\nbuild.sh took {time.monotonic() - started:.0f} s")
    return dist


def run_self_test(exe: Path, **env: str) -> str:
    proc = subprocess.run([str(exe), "--self-test"], cwd="/", env=clean_env(**env),
                          capture_output=True, text=True, timeout=200)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Self-test passed" in proc.stdout
    return proc.stdout


def test_the_bundle_passes_its_self_test(dist):
    exe = dist / "hearth" / "hearth"
    out = run_self_test(exe)
    assert f"PyInstaller bundle: {exe}" in out
    assert f"resources: {dist / 'hearth' / '_internal' / 'resources'} (bundle)" in out
    assert repr(testmodels.bigram_text(14)) in out


def test_the_worker_runs_the_bundles_own_llama_cpp(dist):
    """The spawned worker is the bundle's executable, with the bundle's libllama loaded."""
    exe = dist / "hearth" / "hearth"
    proc = subprocess.Popen([str(exe), "--self-test"], cwd="/", env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    libs, cmdline, qt = set(), [], set()
    try:
        deadline = time.monotonic() + 120
        while not libs and proc.poll() is None and time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children():
                try:
                    maps = [m.path for m in child.memory_maps()]
                    if any("libllama" in m for m in maps):
                        libs = {m for m in maps if "llama" in m or "ggml" in m}
                        qt = {m for m in maps if "libQt6" in m}
                        cmdline = child.cmdline()
                except psutil.Error:
                    continue
            time.sleep(0.01)
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert libs, "never saw the worker with llama.cpp loaded"
    assert all(m.startswith(str(dist / "hearth" / "_internal")) for m in libs), libs
    assert cmdline[0] == str(exe) and "--multiprocessing-fork" in cmdline
    assert not qt, f"the worker loaded Qt (installer/rthooks should prevent it): {qt}"


def test_subcommands_work_in_the_bundle(dist, tmp_path):
    exe = dist / "hearth" / "hearth"
    model = testmodels.write_model(tmp_path / "m.gguf")
    env = clean_env(HEARTH_HOME=str(tmp_path / "home"))
    version = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.strip() == f"Hearth {__version__}"
    inspect = subprocess.run([exe, "inspect", model], env=env, capture_output=True, text=True)
    assert inspect.returncode == 0 and "Hearth test model" in inspect.stdout, inspect.stderr
    run = subprocess.run([exe, "run", model, "Hello", "-n", "7", "--temp", "0"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert testmodels.bigram_text(7) in run.stdout


def test_the_archive_installs_and_its_launcher_passes_the_self_test(dist, tmp_path):
    name = f"hearth-{__version__}-linux-{os.uname().machine}"
    subprocess.run(["tar", "-xzf", dist / f"{name}.tar.gz", "-C", tmp_path], check=True)
    home = tmp_path / "home"
    env = clean_env(HOME=str(home), LANG="C.UTF-8")
    subprocess.run(["./install.sh"], cwd=tmp_path / name, env=env, check=True)
    subprocess.run(["rm", "-rf", tmp_path / name], check=True)  # the installed copy stands alone
    launcher = home / ".local" / "bin" / "hearth"
    out = run_self_test(launcher, HOME=str(home), LANG="C.UTF-8")
    assert f"{home}/.local/lib/hearth/_internal/resources (bundle)" in out
    subprocess.run([home / ".local/lib/hearth/uninstall.sh"], env=env, check=True)
    assert not launcher.exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_the_deb_names_the_libraries_qt_loads_from_the_system(dist):
    """PyInstaller never bundles glibc, OpenGL or libxcb; the X helpers the xcb plugin needs
    are bundled when the build machine has them, and must be in Depends when it does not."""
    deb = next(dist.glob(f"hearth_{__version__}_*.deb"))
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True)
    depends = fields.stdout
    for package in ("libc6 (>=", "libxcb1", "libgl1", "libegl1"):
        assert package in depends, depends
    internal = dist / "hearth" / "_internal"
    for lib, package in (("libxcb-icccm.so.4", "libxcb-icccm4"),
                         ("libxcb-keysyms.so.1", "libxcb-keysyms1")):  # fmt: skip
        assert (internal / lib).exists() or package in depends, (lib, depends)
