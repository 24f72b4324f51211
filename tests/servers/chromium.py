"""Headless Chromium driven over the DevTools protocol, for checks a user's browser makes.

Only the few calls the tests need: open a page with cookies, evaluate JavaScript, press a key,
take a screenshot. The browser is Debian's `chromium` (`.ci/run` installs it); tests skip when
it is absent.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BINARY = next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None
)


class Page:
    """One browser tab."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=120))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        got = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return got.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 120.0) -> Any:
        """Poll until `expression` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.25)
        raise TimeoutError(f"still false after {timeout:.0f} s: {expression}")

    def press(self, key: str) -> None:
        """Press and release one printable key, as a person at the keyboard does."""
        code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
        vk = ord(key.upper())
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent", type=kind, key=key, code=code,
                text=key if kind == "keyDown" else "", windowsVirtualKeyCode=vk,
                nativeVirtualKeyCode=vk,
            )  # fmt: skip

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def open_page(
    url: str, *, cookies: dict[str, str] | None = None, size: tuple[int, int] = (1280, 1000)
) -> Iterator[Page]:
    """Start a headless Chromium, set `cookies` for `url`'s site, open `url`."""
    from websockets.sync.client import connect

    assert BINARY is not None, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile:
        log = Path(profile) / "stderr.txt"
        with log.open("w") as err:
            browser = subprocess.Popen(
                [BINARY, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--remote-debugging-port=0", f"--user-data-dir={profile}",
                 f"--window-size={size[0]},{size[1]}", "about:blank"],
                stderr=err, env={**os.environ, "HOME": profile}, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            port = None
            while port is None and time.monotonic() < deadline and browser.poll() is None:
                found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", log.read_text())
                port = found.group(1) if found else time.sleep(0.2)
            if port is None:
                raise RuntimeError(f"chromium did not start: {log.read_text()[-1500:]}")
            targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=30).json()
            target = next(t for t in targets if t["type"] == "page")
            # DevTools refuses a browser Origin; a test client sends none.
            with connect(target["webSocketDebuggerUrl"], origin=None, max_size=2**26) as ws:
                page = Page(ws)
                for name, value in (cookies or {}).items():
                    page.call("Network.setCookie", name=name, value=value, url=url)
                page.call("Page.enable")
                page.call("Page.navigate", url=url)
                yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)  # the browser and its helpers
            browser.wait(timeout=30)
