"""A real `hearth serve` in a subprocess, on a free port, with its own HEARTH_HOME."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """One running server; `url` is its base URL. Models are copied into its library."""

    def __init__(self, home: Path, models: dict[str, Path], args=(), env=None):
        self.home = home
        folder = home / "data" / "models" / "test"
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in models.items():
            shutil.copy(path, folder / f"{name}.gguf")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HEARTH_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
        self.env.pop("HEARTH_MODELS_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60):
            self.stop()
            raise RuntimeError("hearth serve did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 60, **kw})

    def status(self) -> dict:
        with self.client() as c:
            return c.get("/api/hearth/status", headers=self.auth).json()

    @property
    def auth(self) -> dict[str, str]:
        token = dict(zip(self.proc.args, self.proc.args[1:], strict=False)).get("--token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code
