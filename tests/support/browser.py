"""Headless Chromium (Debian's /usr/bin/chromium) driven over the DevTools protocol, for the dashboard's tests.

No WebDriver: one websocket to the page's DevTools endpoint. ``Browser.open(url)`` loads a page and
collects what its console said and any uncaught exception; ``eval(js)`` runs JavaScript in the page
and returns the value; ``wait_for(js)`` polls an expression with a deadline; ``screenshot(path)``
saves a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """One headless Chromium with one tab."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                f"--window-size={width},{height}",
                f"--user-data-dir={self.profile}",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                tabs = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
                page = next(t for t in tabs if t.get("type") == "page")
                break
            except (httpx.HTTPError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("chromium did not start its DevTools endpoint") from None
                time.sleep(0.1)
        self._loop = asyncio.new_event_loop()
        self._ws = self._loop.run_until_complete(self._connect(page["webSocketDebuggerUrl"]))
        self._id = 0
        self.console: list[str] = []  # "level: text"
        self.errors: list[str] = []  # uncaught exceptions and console errors
        self._call("Runtime.enable")
        self._call("Page.enable")
        self._call("Log.enable")

    @staticmethod
    async def _connect(url: str) -> Any:
        import websockets

        return await websockets.connect(url, max_size=64 * 2**20)

    def _handle(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(text)
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())

    async def _send(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        self._id += 1
        my = self._id
        await self._ws.send(json.dumps({"id": my, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            raw = await asyncio.wait_for(self._ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            msg = json.loads(raw)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._handle(msg)

    def _call(self, method: str, timeout_s: float = 30.0, **params: Any) -> Any:
        return self._loop.run_until_complete(self._send(method, params, timeout_s))

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self._call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("exception", {}).get("description", str(r["exceptionDetails"])))
        return r.get("result", {}).get("value")

    def open(
        self, url: str, ready: str = "document.body && document.body.dataset.ready === '1'", timeout_s: float = 30.0
    ) -> None:
        """Load ``url`` and wait until ``ready`` is true (the dashboard sets body[data-ready] when drawn)."""
        self._call("Page.navigate", url="about:blank")  # a fresh document even when only the fragment differs
        self.wait_for("document.readyState === 'complete' && location.href === 'about:blank'")
        self.console.clear()
        self.errors.clear()
        self._call("Page.navigate", url=url)
        self.wait_for(ready, timeout_s)

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true: {expression}; console: {self.console[-5:]}; errors: {self.errors}")
            self._loop.run_until_complete(self._drain(0.05))

    async def _drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self._handle(json.loads(await asyncio.wait_for(self._ws.recv(), timeout=left)))
            except asyncio.TimeoutError:
                return

    def screenshot(self, path: Path) -> Path:
        data = self._call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "_ws", None) is not None:
                self._loop.run_until_complete(self._ws.close())
        except Exception:  # noqa: BLE001 - the browser may be gone already
            pass
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
