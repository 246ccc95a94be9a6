"""The progress bar of long evaluations (tfvae.progress)."""
import io

from tfvae.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_per_tenth_and_a_terminal_one_line_redrawn():
    log = io.StringIO()
    with Progress("log-likelihood", total=20, unit="batches", stream=log,
                  min_interval=0) as bar:
        for _ in range(20):
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("log-likelihood: 2/20 batches [##....")
    assert "left" in lines[0] and lines[-1].startswith("log-likelihood: 20/20 batches [####")

    slow = io.StringIO()                   # lines at most every min_interval: here, none
    with Progress("log-likelihood", total=20, stream=slow, min_interval=60) as bar:
        bar.update(20)
    assert slow.getvalue() == ""

    screen = Terminal()
    with Progress("evaluate", total=4, stream=screen) as bar:
        for _ in range(4):
            bar.update()
    text = screen.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1


def test_an_unknown_total_counts_and_hidden_bars_print_nothing():
    log = io.StringIO()
    with Progress("evaluate", total=None, unit="images", stream=log) as bar:
        bar.update(300)
    assert log.getvalue().startswith("evaluate: 300 images, ")
    quiet = io.StringIO()
    with Progress("evaluate", total=3, show=False, stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == "" and bar.done == 3
