"""A progress bar on standard error for long evaluations (the importance-sampled log-likelihood,
`tfvae evaluate`): standard output stays free for results, such as the CLI's JSON line.

On a terminal the bar is redrawn in place; elsewhere (a log file, CI, a notebook's captured
stderr) it prints a line at a new tenth of the work at most every `min_interval` seconds, and a
last line if it printed any, so a long run says how far it is and a short one stays silent.

    with Progress("log-likelihood", total=100, unit="batches") as bar:
        for batch in batches:
            ...
            bar.update()
"""
import sys
import time

_WIDTH = 24
#: off a terminal, the fewest seconds between two lines (the default of `min_interval`)
MIN_INTERVAL = 5.0


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts done units of `total` (None: unknown) and shows them on `stream` (stderr).

    Args:
        what: what is being done, e.g. "log-likelihood (k = 5000)".
        total: how many units in all, or None when unknown (a dataset of unknown length).
        unit: the units' name, e.g. "batches" or "images".
        show: False shows nothing (the bar still counts).
        stream: where to write; standard error by default.
        min_interval: off a terminal, the fewest seconds between two lines; None: MIN_INTERVAL.
    """

    def __init__(self, what, total=None, unit="batches", show=True, stream=None,
                 min_interval=None):
        self.what, self.total, self.unit, self.show = what, total, unit, bool(show)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.monotonic()
        self._tenths_shown = 0
        self.min_interval = MIN_INTERVAL if min_interval is None else float(min_interval)
        self._last_line = self._start
        self._printed = False
        self._closed = False
        self._live = self.show and getattr(self.stream, "isatty", lambda: False)()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def line(self):
        """The bar's text now, e.g. "log-likelihood: 40/100 batches [#########...] 12s, about
        18s left"."""
        elapsed = time.monotonic() - self._start
        if not self.total:
            return f"{self.what}: {self.done} {self.unit}, {_duration(elapsed)}"
        filled = int(_WIDTH * min(self.done, self.total) / self.total)
        text = (f"{self.what}: {self.done}/{self.total} {self.unit} "
                f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {_duration(elapsed)}")
        if 0 < self.done < self.total:
            text += f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def update(self, n=1):
        self.done += n
        if not self.show:
            return
        if self._live:
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
        elif self.total:
            tenths = 10 * self.done // self.total
            now = time.monotonic()
            if tenths > self._tenths_shown and now - self._last_line >= self.min_interval:
                self._tenths_shown, self._last_line = tenths, now
                self._write_line()

    def close(self):
        """End the bar (on a terminal: end its line). Closing twice does nothing more."""
        if self._closed:
            return
        self._closed = True
        if self._live:
            self.stream.write("\n")
            self._live = False
        elif self.show and self.done and (self._printed or not self.total) and (
                not self.total or self._tenths_shown < 10):
            self._write_line()   # the end of a long run, or the count of an unknown total
        self.stream.flush()

    def _write_line(self):
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._printed = True
