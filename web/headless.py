"""The page of web/ in headless Chromium, served from this machine and driven over the DevTools
protocol, with Python's standard library alone (tests/test_web.py uses the same pieces).

    python web/build.py                               # the model the page runs
    python web/headless.py --screenshot docs/web.png  # the page, after a digit is drawn on it

`serve(folder)` serves a folder on a free local port; `Chromium` runs a headless browser whose
protocol goes over two pipes (--remote-debugging-pipe), so no port, no WebSocket client and no
browser download are needed: Debian's `chromium` package is enough.
"""
import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

WEB = Path(__file__).resolve().parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: the page's viewport in CSS pixels: the whole page fits, so a screenshot holds all three panels
VIEWPORT = (1080, 1040)
#: a "7" on the 28 x 28 pad, as strokes of points in pixels
SEVEN = [[(7.5, 7.5), (20.5, 7.5), (13.5, 22.5)], [(11.5, 15), (18.5, 15)]]


def find_chromium():
    """The path of a Chromium on PATH, or None."""
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def missing_runtime(web=WEB):
    """Why the page cannot run from `web`, or None: its ONNX Runtime is not installed."""
    if not (web / "node_modules" / "onnxruntime-web" / "dist").is_dir():
        return f"onnxruntime-web is not installed: npm ci --prefix {web}"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per file fetched is noise in a test's output
        pass


@contextlib.contextmanager
def serve(folder):
    """Serve `folder` over HTTP on a free port of 127.0.0.1 in a thread; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


class PageError(RuntimeError):
    """The page failed, or did not answer in time; the message has what it logged."""


def _above(fd, low=10):
    """`fd` moved to a number >= low, so that bash can place the pipes at 3 and 4 without
    overwriting one with the other (sh, dash, takes single-digit numbers only)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return moved


class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol.

        with Chromium() as browser:
            browser.open(url)
            browser.wait_for("window.tfvaeReady")
            browser.evaluate("tfvaeTest.sample([0, 1])")     # awaited, returned as JSON values
            browser.screenshot("page.png")
    """

    def __init__(self, executable=None, viewport=VIEWPORT, timeout=120):
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError(f"no Chromium on PATH ({', '.join(BROWSERS)}): "
                                    f"apt-get install chromium")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="tfvae-chromium-")
        # Chromium reads the protocol from fd 3 and writes it to fd 4, messages ending in NUL.
        commands_read, commands = map(_above, os.pipe())
        self._replies, replies_write = map(_above, os.pipe())
        flags = [
            "--headless", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
            "--hide-scrollbars",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu",
            "--disable-extensions", "--disable-background-networking", "--mute-audio",
            # Containers give /dev/shm a few MB; CI runs as root, where the sandbox refuses to
            # start. The page is our own, served from this machine.
            "--disable-dev-shm-usage", "--no-sandbox",
        ]
        # Its stderr goes to a file: a pipe nobody reads would fill up and stall it.
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{commands_read} 4>&{replies_write}', "bash",
             executable, *flags, "about:blank"],
            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr)
        os.close(commands_read)
        os.close(replies_write)
        self._commands = os.fdopen(commands, "wb")
        self._buffer, self._id, self._session = b"", 0, None
        self.log = []  # what the page printed and threw: a failure's explanation
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            # The viewport itself (--window-size would count the browser's frame in).
            self.send("Emulation.setDeviceMetricsOverride", width=viewport[0],
                      height=viewport[1], deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def send(self, method, **params):
        """Run a protocol command on the page (on the browser before one is attached)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        self._commands.write(json.dumps(message).encode() + b"\0")
        self._commands.flush()
        while True:
            reply = self._receive()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise PageError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._note(reply)

    def _receive(self):
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise PageError(f"Chromium did not answer in {self.timeout} s{self._logged()}")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                self._stderr.seek(0)
                raise PageError(f"Chromium ended: {self._stderr.read().decode()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _note(self, event):
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"):
            self.log.append(" ".join(str(a.get("value", a.get("description", "")))
                                     for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.log.append(details.get("exception", {}).get("description", details.get("text")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.log.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")

    def _logged(self):
        return "; the page logged:\n" + "\n".join(self.log) if self.log else ""

    def open(self, url):
        self.send("Page.navigate", url=url)

    def evaluate(self, expression):
        """The JSON value of a JavaScript expression in the page, promises awaited."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(f"{expression}: "
                            f"{details.get('exception', {}).get('description', details['text'])}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=None, error="window.tfvaeError"):
        """Poll until `expression` is true; a PageError as soon as `error` is set."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            failed = self.evaluate(error)
            if failed:
                raise PageError(f"the page failed: {failed}{self._logged()}")
            if self.evaluate(expression):
                return
            time.sleep(0.1)
        raise PageError(f"{expression} was not true within {timeout or self.timeout} s"
                        f"{self._logged()}")

    def drag(self, points):
        """Press the left mouse button at the first of `points` (CSS pixels of the page),
        move through the others, release at the last: a stroke, as a person draws one."""
        def mouse(kind, x, y, buttons):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      buttons=buttons, clickCount=1)
        mouse("mousePressed", *points[0], 1)
        for point in points[1:]:
            mouse("mouseMoved", *point, 1)
        mouse("mouseReleased", *points[-1], 0)

    def screenshot(self, path):
        """A PNG of the viewport into `path`."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        self._session = None  # Browser.close goes to the browser, not the page
        with contextlib.suppress(OSError, PageError):
            self.send("Browser.close")
        with contextlib.suppress(OSError):  # a broken pipe: Chromium has gone already
            self._commands.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._replies)
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def draw(browser, strokes, selector="#draw .pad"):
    """Draw `strokes` (lists of points in the pad's own pixels) on the page's pad with the
    mouse, moving a quarter of a pad pixel at a time."""
    box = browser.evaluate(f"(({{left, top, width, height}}) => [left, top, width, height])("
                           f"document.querySelector({json.dumps(selector)})"
                           f".getBoundingClientRect())")
    size = browser.evaluate("tfvaeTest.drawing()[0].length")
    scale = box[2] / size
    for stroke in strokes:
        points = []
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            steps = max(1, int(4 * max(abs(x1 - x0), abs(y1 - y0))))
            points += [(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)
                       for k in range(steps)]
        points.append(stroke[-1])
        browser.drag([(box[0] + x * scale, box[1] + y * scale) for x, y in points])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--model", default="models/vae_mnist/1", help="the page's ?model=")
    args = parser.parse_args(argv)
    missing = missing_runtime()
    if missing:
        raise SystemExit(missing)
    with serve(WEB) as url, Chromium() as browser:
        browser.open(f"{url}?model={args.model}")
        browser.wait_for("window.tfvaeReady")
        draw(browser, SEVEN)
        # The reconstruction follows the last stroke; done when the page is idle.
        browser.wait_for("tfvaeTest.idle()")
        browser.screenshot(args.screenshot)
    print(args.screenshot)


if __name__ == "__main__":
    main()
