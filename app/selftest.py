"""`hearth --self-test`: the smoke test of an installation.

Runs the real thing end to end, the way a user would, and says what works: the resources
are found and Qt can draw their SVGs, the window opens (offscreen unless QT_QPA_PLATFORM
says otherwise) and paints, the engine's worker *process* starts, a tiny bigram model
generated on the spot opens on the model card, loads with the settings panel's defaults,
streams a greedy reply that must equal `testmodels.bigram_text(14)` exactly, unloads, and
the worker exits with the window.

It never touches the user's files: HEARTH_HOME, HOME and the XDG / Hugging Face / Ollama
folders point into a temporary directory for the run (the worker inherits them), removed
afterwards. Every wait has a deadline inside an overall budget (TOTAL_TIMEOUT_S), and
faulthandler ends the process if even that is blown by a hang in C code, so the command
fails rather than hangs. Exit status: 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOTAL_TIMEOUT_S = 120.0
REPLY_TOKENS = 14
# Folders a run could otherwise read or write in the user's real home.
_ISOLATED_VARS = ("HEARTH_HOME", "HEARTH_MODELS_DIR", "HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
                  "XDG_CACHE_HOME", "XDG_STATE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
                  "QT_QPA_PLATFORM")  # fmt: skip


class StepFailed(Exception):
    """A step's check failed; the message says what was seen."""


@dataclass
class StepResult:
    name: str
    status: str  # "OK" | "WARN" | "FAIL"
    detail: str
    seconds: float


@contextlib.contextmanager
def _isolated_env(root: Path) -> Iterator[None]:
    """Point every folder Hearth (or the libraries it scans) uses into `root`."""
    saved = {k: os.environ.get(k) for k in _ISOLATED_VARS}
    home = root / "home"
    values = {
        "HEARTH_HOME": root / "hearth",
        "HEARTH_MODELS_DIR": root / "hearth" / "models",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
        "HF_HOME": home / ".cache" / "huggingface",
        "OLLAMA_MODELS": home / ".ollama" / "models",
    }
    if os.name == "posix":  # Path.home(): LM Studio's folders, QSettings, font caches
        values["HOME"] = home
    for key, value in values.items():
        value.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(value)
    os.environ.pop("HF_HUB_CACHE", None)
    if not saved["QT_QPA_PLATFORM"]:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _LogCollector(logging.Handler):
    """Keeps the warnings and errors logged during the run, for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class _SignalWait:
    """Wait (in a coroutine) for a Qt signal; any of `fail` signals fails the wait.

    Connect first, then trigger the action, then `await wait(...)`: a signal emitted
    between the action and the await is not lost."""

    def __init__(self, signal, fail: tuple[tuple[Any, Callable[..., str]], ...] = (),
                 accept: Callable[..., bool] | None = None):  # fmt: skip
        self._future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._accept = accept
        self._connections = [(signal, self._done)]
        for sig, describe in fail:
            self._connections.append((sig, self._failer(describe)))
        for sig, slot in self._connections:
            sig.connect(slot)

    def _done(self, *args) -> None:
        if not self._future.done() and (self._accept is None or self._accept(*args)):
            self._future.set_result(args)

    def _failer(self, describe: Callable[..., str]) -> Callable[..., None]:
        def fail(*args) -> None:
            if not self._future.done():
                self._future.set_exception(StepFailed(describe(*args)))

        return fail

    async def wait(self, timeout: float, what: str) -> tuple:
        try:
            return await asyncio.wait_for(self._future, max(0.1, timeout))
        except TimeoutError:
            raise StepFailed(
                f"no answer within {_seconds(timeout)} while waiting for {what}"
            ) from None
        finally:
            for sig, slot in self._connections:
                with contextlib.suppress(RuntimeError, TypeError):
                    sig.disconnect(slot)


class SelfTest:
    """The steps, their results and the facts the report prints."""

    def __init__(self, workdir: Path, out=None, timeout: float = TOTAL_TIMEOUT_S):
        self.workdir = workdir
        self.out = out or sys.stdout
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.results: list[StepResult] = []
        self.facts: dict[str, str] = {}
        self.window = None
        self.worker_pid: int | None = None
        self.log_lines: list[str] = []  # the engine's llama.cpp log, for failures

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # --- running ---------------------------------------------------------------------

    async def run(self) -> bool:
        steps = [("resources", self.step_resources), ("display", self.step_display),
                 ("window", self.step_window), ("engine", self.step_engine),
                 ("model", self.step_model), ("load", self.step_load),
                 ("reply", self.step_reply), ("unload", self.step_unload)]  # fmt: skip
        ok = True
        for name, step in steps:
            if not await self._run_step(name, step):
                ok = False
                break
        # Always, even out of time: the window closes and the worker process stops.
        ok = await self._run_step("shutdown", self.step_shutdown, budgeted=False) and ok
        return ok

    async def _run_step(self, name: str, step, budgeted: bool = True) -> bool:
        started = time.monotonic()
        status, detail = "OK", ""
        if budgeted and self.left() <= 0:
            status, detail = "FAIL", f"the self-test ran out of time ({self.timeout:g} s)"
        else:
            try:
                result = await step()
                status, detail = result if isinstance(result, tuple) else ("OK", result)
            except StepFailed as e:
                status, detail = "FAIL", str(e)
            except Exception as e:  # a bug or a broken install: report it as the step's failure
                logging.getLogger(__name__).debug("self-test step %s", name, exc_info=True)
                status, detail = "FAIL", f"{type(e).__name__}: {e}"
        self.results.append(StepResult(name, status, detail or "", time.monotonic() - started))
        self._print_step(self.results[-1])
        return status != "FAIL"

    def _print_step(self, r: StepResult) -> None:
        print(f"  {r.status:<5} {r.name:<10} {_seconds(r.seconds):>7}  {r.detail}",
              file=self.out, flush=True)  # fmt: skip

    # --- steps -----------------------------------------------------------------------

    async def step_resources(self) -> str:
        from PySide6.QtCore import QSize
        from PySide6.QtGui import QIcon, QImageReader

        from app import resources

        root = resources.resources_root()
        label = next((lbl for lbl, p in resources._candidates() if p == root), "?")
        self.facts["resources"] = f"{root} ({label})"
        for theme in resources.THEMES:
            qss = resources.theme_stylesheet(theme)
            if len(qss) < 200 or "{" not in qss:
                raise StepFailed(f"the {theme} stylesheet is empty or damaged")
        formats = {bytes(f).decode() for f in QImageReader.supportedImageFormats()}
        if "svg" not in formats:
            raise StepFailed("Qt cannot read SVG images (imageformats/qsvg plugin missing): "
                             "the themes' check marks and arrows would not show")  # fmt: skip
        icon = QIcon(str(resources.resource_path("icons", "hearth.svg")))
        if icon.isNull() or icon.pixmap(QSize(64, 64)).isNull():
            raise StepFailed("the app icon does not render (iconengines/qsvgicon plugin missing)")
        ui = QIcon(str(resources.ui_icon_path("send")))
        if ui.pixmap(QSize(24, 24)).isNull():
            raise StepFailed("the UI icons do not render")
        return f"themes, app icon and SVG plugins from the {label}"

    async def step_display(self) -> tuple[str, str]:
        """Can Qt's desktop platform plugin load here? The window itself runs offscreen."""
        from PySide6.QtCore import QCoreApplication, QPluginLoader

        name = {"win32": "qwindows", "darwin": "qcocoa"}.get(sys.platform, "qxcb")
        found = None
        for folder in QCoreApplication.libraryPaths():
            for entry in Path(folder, "platforms").glob(f"*{name}.*"):
                found = entry
                break
        if found is None:
            return "FAIL", f"Qt's {name} platform plugin is missing from the installation"
        loader = QPluginLoader(str(found))
        if loader.load():
            return "OK", f"the {name} platform plugin loads ({found.parent})"
        reason = loader.errorString()
        has_display = sys.platform in ("win32", "darwin") or bool(
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        hint = (
            " (install the system libraries it names)" if sys.platform.startswith("linux") else ""
        )
        # Without a display the window could not open anyway: worth saying, not failing.
        return ("FAIL" if has_display else "WARN"), f"{name} cannot load: {reason}{hint}"

    async def step_window(self) -> str:
        from PySide6.QtCore import QEvent, QObject, Signal

        from app.ui.main_window import MainWindow

        class PaintWatch(QObject):
            painted = Signal()

            def eventFilter(self, obj, event) -> bool:
                if event.type() == QEvent.Type.Paint:
                    self.painted.emit()
                return False

        window = self.window = MainWindow()
        watch = PaintWatch(window)
        window.installEventFilter(watch)
        wait = _SignalWait(watch.painted)
        window.show()
        await wait.wait(min(20.0, self.left()), "the window's first paint")
        window.removeEventFilter(watch)
        window.engine.log_line.connect(lambda ev: self.log_lines.append(ev.line))
        return f"shown and painted ({window.width()}x{window.height()})"

    async def step_engine(self) -> str:
        engine = self.window.engine
        wait = _SignalWait(engine.ready, fail=((engine.error, _error_text),
                                               (engine.crashed, _crash_text)))  # fmt: skip
        self.window.start()
        (ready,) = await wait.wait(min(60.0, self.left()), "the engine's worker to start")
        if ready.pid == os.getpid():
            raise StepFailed("the engine runs inside the window's process, not a worker process")
        self.worker_pid = ready.pid
        self.facts["system"] = " ".join(ready.system_info.split())
        self.facts["gpu offload"] = "yes" if ready.gpu_offload else "no (CPU only)"
        return f"worker process {ready.pid} imported llama.cpp"

    async def step_model(self) -> str:
        from app.engine import testmodels

        path = testmodels.write_model(self.workdir / "selftest-bigram.gguf")
        window = self.window
        wait = _SignalWait(window.model_opened, fail=((window.model_refused, _refusal_text),))
        window.open_model(str(path))
        await wait.wait(min(20.0, self.left()), "the model card")
        title = window.card.title.text()
        if title != "Hearth test model":
            raise StepFailed(f"the card shows {title!r}, not the generated model")
        return f"generated {path.stat().st_size / 1e6:.1f} MB bigram model; card shows {title!r}"

    async def step_load(self) -> str:
        window, engine = self.window, self.window.engine
        wait = _SignalWait(engine.loaded, fail=((engine.error, _error_text),
                                                (engine.crashed, _crash_text)))  # fmt: skip
        window.load_current()  # what the Load button does, with the panel's settings
        if engine.loading is None:
            raise StepFailed(window.notice.text.text() or "the window did not start the load")
        (loaded,) = await wait.wait(min(60.0, self.left()), "the model to load")
        return (f"n_ctx {loaded.n_ctx}, KV {loaded.settings.type_k}/{loaded.settings.type_v}, "
                f"{loaded.n_gpu_layers} layers on GPU, {_seconds(loaded.load_seconds)}")  # fmt: skip

    async def step_reply(self) -> str:
        from app.engine import testmodels
        from app.engine.protocol import ChatMessage
        from app.engine.settings import SamplingSettings

        engine = self.window.engine
        pieces: list[str] = []
        rid_box: list[str | None] = [None]

        def on_tokens(rid: str, text: str) -> None:
            if rid == rid_box[0]:
                pieces.append(text)

        engine.tokens.connect(on_tokens)
        wait = _SignalWait(engine.finished, accept=lambda f: f.request_id == rid_box[0],
                           fail=((engine.error, _error_text), (engine.crashed, _crash_text)))  # fmt: skip
        sampling = SamplingSettings(temperature=0.0, max_tokens=REPLY_TOKENS)
        rid_box[0] = engine.generate([ChatMessage("user", "Hello")], sampling)
        if rid_box[0] is None:
            raise StepFailed("the engine refused the request")
        try:
            (finished,) = await wait.wait(min(60.0, self.left()), "the reply")
        finally:
            engine.tokens.disconnect(on_tokens)
        streamed, want = "".join(pieces), testmodels.bigram_text(REPLY_TOKENS)
        if streamed != want or finished.text != want:
            raise StepFailed(f"the reply was {streamed!r} (final text {finished.text!r}), "
                             f"expected {want!r}")  # fmt: skip
        t = finished.timings
        speed = (f", first token after {t.ttft_s * 1000:.0f} ms, {t.gen_tps:.0f} tokens/s"
                 if t is not None else "")  # fmt: skip
        return f"{REPLY_TOKENS} tokens streamed, exactly as expected {streamed!r}{speed}"

    async def step_unload(self) -> str:
        engine = self.window.engine
        wait = _SignalWait(engine.unloaded, fail=((engine.error, _error_text),
                                                  (engine.crashed, _crash_text)))  # fmt: skip
        engine.unload()
        await wait.wait(min(30.0, self.left()), "the model to unload")
        return "model unloaded"

    async def step_shutdown(self) -> str:
        from app.ui import background

        if self.window is None:
            return "no window to close"
        self.window.close()  # stops the engine thread and the worker, as quitting does
        background.wait_all(5000)
        pid = self.worker_pid
        if pid is not None:
            import psutil

            for _ in range(50):
                if not _running(psutil, pid):
                    break
                await asyncio.sleep(0.1)
            else:
                raise StepFailed(
                    f"the worker process {pid} is still running after the window closed"
                )
            return f"window closed, worker process {pid} exited"
        return "window closed"

    # --- report ----------------------------------------------------------------------

    def header(self) -> None:
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion
        from PySide6.QtGui import QGuiApplication

        from app import __version__

        frozen = "PyInstaller bundle" if getattr(sys, "frozen", False) else "source"
        print(f"Hearth {__version__} self-test ({frozen}: {sys.executable})", file=self.out)
        print(f"  Python {platform.python_version()} on {platform.platform()}", file=self.out)
        print(f"  Qt {qVersion()} (PySide6 {pyside_version}), window platform "
              f"{QGuiApplication.platformName()}", file=self.out)  # fmt: skip
        print(f"  llama-cpp-python {_llama_version()}", file=self.out)
        print(f"  scratch folder {self.workdir} (HEARTH_HOME and HOME point here; removed)",
              file=self.out, flush=True)  # fmt: skip

    def footer(self, ok: bool, seconds: float, log: _LogCollector) -> None:
        out = self.out
        for key in ("resources", "gpu offload", "system"):
            if key in self.facts:
                print(f"  {key}: {self.facts[key]}", file=out)
        noise = [line for line in log.lines if "propagateSizeHints" not in line]
        if noise:
            print(f"  {len(noise)} warning(s) logged during the run, the first ones:", file=out)
            for line in noise[:5]:
                print(f"    {line}", file=out)
        failed = next((r for r in self.results if r.status == "FAIL"), None)
        if failed is not None and self.log_lines:
            print("  last llama.cpp log lines:", file=out)
            for line in self.log_lines[-8:]:
                print(f"    {line}", file=out)
        if ok:
            print(f"Self-test passed in {_seconds(seconds)}.", file=out, flush=True)
        else:
            name = failed.name if failed else "?"
            print(f"Self-test FAILED at step '{name}' after {_seconds(seconds)}.", file=out,
                  flush=True)  # fmt: skip


def _running(psutil, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _error_text(error) -> str:
    details = "; ".join(getattr(error, "details", ()) or ())
    return f"the engine said: {error.message}" + (f" ({details})" if details else "")


def _crash_text(crash) -> str:
    return f"the engine crashed: {crash.message}"


def _refusal_text(path: str, reason: str) -> str:
    return f"the window refused {os.path.basename(path)}: {reason}"


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _llama_version() -> str:
    """From the package metadata: the window process never imports llama_cpp itself."""
    from importlib import metadata

    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "(version unknown: no package metadata)"


def run_self_test(args: argparse.Namespace | None = None, out=None) -> int:
    """Run every step, print the report, return the exit status (0: all passed)."""
    timeout = float(os.environ.get("HEARTH_SELFTEST_TIMEOUT", TOTAL_TIMEOUT_S))
    out = out or sys.stdout
    started = time.monotonic()
    # A hang in C code never returns to the event loop: end the process, with a traceback.
    faulthandler.dump_traceback_later(timeout + 30, exit=True)
    log = _LogCollector()
    logging.getLogger().addHandler(log)
    try:
        with tempfile.TemporaryDirectory(prefix="hearth-selftest-") as tmp, \
                _isolated_env(Path(tmp)):  # fmt: skip
            test = SelfTest(Path(tmp), out, timeout)
            ok = _run_in_event_loop(test)
            test.footer(ok, time.monotonic() - started, log)
    finally:
        faulthandler.cancel_dump_traceback_later()
        logging.getLogger().removeHandler(log)
    return 0 if ok else 1


def _run_in_event_loop(test: SelfTest) -> bool:
    """The window's own set-up (theme, qasync loop), with the test as the loop's task."""
    from app.ui.application import create_application

    qapp = create_application()
    test.header()
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        with loop:
            return loop.run_until_complete(test.run())
    finally:
        asyncio.set_event_loop(None)
