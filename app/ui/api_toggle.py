"""The window's local API: Model → Serve the local API, its preferences, its status-bar item.

The same aiohttp app as `hearth serve` (app/api), started on the window's model host loop
(host_loop.py) through app.api.switch.ApiSwitch, so API clients and the window share loaded
models, keep_alive and memory admission: a request for a model that is not loaded loads it
just in time, and the Models dock's Loaded list shows it. The GUI thread only hands the
start or stop to the loop and hears back through a queued signal; it never waits on a bind.

The preferences (app.engine.preferences, group "Local API") are the state: the menu action
is a view of `api_enabled`, and a changed port, address, token or origin list restarts the
server. The token lives in the OS keyring (app.engine.pref_secrets), read off the GUI
thread at start: the server waits for it rather than start without it. A non-loopback
address needs the user to accept a warning first (once per address and run); a bind that
fails (the port is in use) says why and turns the preference off. The status-bar item reads
"API 127.0.0.1:11435 · N requests" (requests in flight); a click copies the server's URL.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QToolButton

from app.ui.preferences import preferences_model

if TYPE_CHECKING:
    from app.api.security import AccessPolicy
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries (what, value) from the host's loop thread into the GUI thread."""

    event = Signal(str, object)


class ApiToggle(QObject):
    """Keeps the window's API server in the state the preferences ask for."""

    state_changed = Signal(str)  # "off" | "starting" | "on" | "stopping"
    active_changed = Signal(int)  # requests in flight
    failed = Signal(str)  # a sentence: the server could not start

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setObjectName("apiToggle")
        self.window = window
        self.prefs = preferences_model()
        self.state = "off"
        self.url: str | None = None
        self.active = 0
        self._serving: AccessPolicy | None = None  # the policy the server runs with
        self._asked: AccessPolicy | None = None  # the policy of the change in flight
        self._busy = False  # a start or stop is on its way through the loop
        self._switch = None  # app.api.switch.ApiSwitch, made on the loop
        self._accepted_hosts: set[str] = set()  # non-loopback addresses the user accepted
        self.warning: QMessageBox | None = None
        self._relay = _Relay(self)
        self._relay.event.connect(self._on_loop_event, Qt.ConnectionType.QueuedConnection)
        self._build()
        self.prefs.changed.connect(self._on_preference_changed)
        self.prefs.secrets_loaded.connect(self.sync)
        window.started.connect(self.sync)

    # --- widgets --------------------------------------------------------------------

    def _build(self) -> None:
        w = self.window
        self.action = QAction("Serve the local API", w)
        self.action.setObjectName("apiAction")
        self.action.setCheckable(True)
        self.action.setChecked(self.prefs.get("api_enabled"))
        self.action.setToolTip(
            "Let other programs use the models through OpenAI- and Ollama-compatible HTTP "
            "(Edit → Preferences → Local API for the port, address and token)"
        )
        self.action.toggled.connect(lambda on: self.prefs.set("api_enabled", on))
        menu = next((a.menu() for a in w.menuBar().actions() if a.text() == "&Model"), None)
        (menu or w.menuBar()).addAction(self.action)
        w.addAction(self.action)
        self.button = QToolButton(w)
        self.button.setObjectName("apiStatus")
        self.button.setAutoRaise(True)
        self.button.setToolTip("Copy the API's URL")
        self.button.clicked.connect(self.copy_url)
        self.button.hide()
        w.statusBar().addPermanentWidget(self.button)

    def _show(self) -> None:
        self.action.blockSignals(True)  # a view of the preference, not a second source
        self.action.setChecked(self.prefs.get("api_enabled"))
        self.action.blockSignals(False)
        if self.state == "on" and self._serving is not None:
            p = self._serving
            shown = f"[{p.host}]" if ":" in p.host else p.host
            n = self.active
            self.button.setText(f"API {shown}:{p.port} · {n} request{'' if n == 1 else 's'}")
            self.button.show()
        else:
            self.button.hide()

    def copy_url(self) -> None:
        """Put the API's URL on the clipboard (OpenAI clients add /v1)."""
        if self.url is None:
            return
        QGuiApplication.clipboard().setText(self.url)
        self.window.statusBar().showMessage(
            f"Copied {self.url} — Ollama clients use it as it is, OpenAI clients {self.url}/v1",
            8000,
        )

    # --- keeping the server as asked ------------------------------------------------

    def _policy(self) -> AccessPolicy:
        from app.api.security import AccessPolicy

        v = self.prefs.values
        return AccessPolicy(
            host=v.api_host,
            port=v.api_port,
            token=v.api_token or None,
            allow_origins=v.api_origins,
        )

    def _on_preference_changed(self, name: str, _value: Any) -> None:
        if name.startswith("api_"):
            self.sync()

    def sync(self) -> None:
        """Start, restart or stop the server so that it runs as the preferences say."""
        host_loop = self.window.engine.host_loop
        if self._busy or host_loop is None or host_loop.loop is None:
            self._show()
            return  # the change in flight calls sync again when it is done
        if not self.prefs.secrets_ready:
            self._show()
            return  # never serve without the token it will have: secrets_loaded syncs
        want = self._policy() if self.prefs.get("api_enabled") else None
        if want == self._serving:
            self._show()
            return
        if want is None:
            self._set_state("stopping")
            self._run(host_loop, self._stop_on_loop(host_loop))
            return
        if not want.loopback_only and want.host not in self._accepted_hosts:
            self._warn(want)
            return
        self._asked = want
        self._set_state("starting")
        self._run(host_loop, self._start_on_loop(host_loop, want))

    def _run(self, host_loop, coro) -> None:
        import asyncio  # the host loop runs by now; start-up does not import asyncio

        self._busy = True
        asyncio.run_coroutine_threadsafe(coro, host_loop.loop)

    async def _start_on_loop(self, host_loop, policy: AccessPolicy) -> None:
        from app.api.switch import ApiSwitch, ListenError

        try:
            if self._switch is None:
                self._switch = ApiSwitch(
                    host_loop.host, lambda n: self._relay.event.emit("active", n)
                )
                host_loop.closers.append(self._switch.stop)  # quitting stops it with the host
            url = await self._switch.start(policy)
        except ListenError as e:
            self._relay.event.emit("failed", str(e))
        except Exception as e:  # a bug: say so rather than leave the toggle spinning
            log.exception("the API did not start")
            self._relay.event.emit("failed", f"The API did not start: {e}")
        else:
            self._relay.event.emit("started", url)

    async def _stop_on_loop(self, _host_loop) -> None:
        try:
            if self._switch is not None:
                await self._switch.stop()
        finally:
            self._relay.event.emit("stopped", None)

    def _on_loop_event(self, what: str, value: Any) -> None:
        if what == "active":
            self.active = value
            self._show()
            self.active_changed.emit(value)
            return
        self._busy = False
        if what == "started":
            self.url, self._serving = value, self._asked
            self._set_state("on")
            self.window.statusBar().showMessage(f"The local API is listening on {value}.", 8000)
        elif what == "stopped":
            self.url, self._serving = None, None
            self._set_state("off")
        elif what == "failed":
            self.url, self._serving = None, None
            self._set_state("off")
            self.window.notice.show_message("banner-error", value)
            self.failed.emit(value)
            self.prefs.set("api_enabled", False)  # the toggle goes back off
        self.sync()  # the preferences may have changed meanwhile

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
        self._show()

    # --- binding beyond this machine ------------------------------------------------

    def _warn(self, policy: AccessPolicy) -> None:
        if self.warning is not None:
            return  # already asking
        # Over the Preferences dialog when the change came from there (it is modal).
        parent = QApplication.activeModalWidget() or self.window
        box = self.warning = QMessageBox(parent)
        box.setObjectName("apiExposeWarning")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Serve the API to the network?")
        box.setText(
            f"Listening on {policy.host} lets other machines on your network use your models"
            + (
                " (they need the token)."
                if policy.token
                else ", and no token is set: anyone who can reach this machine can."
            )
        )
        box.setInformativeText("Use 127.0.0.1 to keep the API on this machine only.")
        box.setStandardButtons(QMessageBox.StandardButton.Cancel)
        serve = box.addButton("Serve to the network", QMessageBox.ButtonRole.AcceptRole)
        serve.setObjectName("apiExposeAccept")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _r: self._on_warning_done(box, policy, serve))
        box.open()  # never exec(): the window keeps running

    def _on_warning_done(self, box: QMessageBox, policy: AccessPolicy, serve) -> None:
        self.warning = None
        box.deleteLater()
        if box.clickedButton() is serve:
            self._accepted_hosts.add(policy.host)
        else:
            self.prefs.set("api_enabled", False)
        self.sync()


def install(window: MainWindow) -> ApiToggle:
    """Add the API toggle to the window (app.ui.extensions.INSTALLERS)."""
    window.api = ApiToggle(window)
    return window.api
