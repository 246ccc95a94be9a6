"""Quiet TensorFlow's C++ start-up logs (the CUDA probes, CPU feature notes, absl's banner).

    from tfvae.logs import quiet_tensorflow_logs
    quiet_tensorflow_logs()      # before TensorFlow is imported: the `tfvae` command calls it
    import tensorflow as tf      # no "cuInit", "cudart_stub" or "absl::InitializeLog" lines

Two mechanisms, because TensorFlow has two kinds of log lines:

- Lines logged once TensorFlow runs (e.g. "failed call to cuInit" when a machine has CUDA
  drivers but no GPU) obey TF_CPP_MIN_LOG_LEVEL, read once, when TensorFlow first logs. Its
  default here is "3" (errors too: TensorFlow raises real errors as Python exceptions), set
  with `os.environ.setdefault`, so a level the user chose always wins.
- Lines logged while TensorFlow's shared libraries load (absl's "WARNING: All log messages
  before absl::InitializeLog() is called are written to STDERR", "cudart_stub.cc ... Could not
  find cuda drivers", on GPU machines "Unable to register cuDNN factory") come from static
  initializers that write to file descriptor 2 before TensorFlow reads the variable: no
  environment variable silences them. While `tensorflow` is first imported, file descriptor 2
  is therefore caught in a temporary file; the TensorFlow log lines below that level are
  dropped and everything else (Python warnings, fatal "F" lines) is passed on afterwards.

Where the import crashes the process outright (an abort from C++), what it printed during the
import is lost with it: `show_tensorflow_logs()` (`tfvae --verbose`) shows everything.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

#: the environment variable TensorFlow's C++ logging reads, and its default here
VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "3"

# One C++ log record: absl / TSL's "I0000 00:00:1796169967.760814   31705 cudart_stub.cc:31] ..."
# or older TensorFlow's "2024-01-31 12:00:00.000000: I tensorflow/...cc:42] ...".
_RECORD = re.compile(r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
                     r"|\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) \S+:\d+\] )")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# cpu_feature_guard's record runs over two lines; its second line has no prefix of its own.
_CONTINUATIONS = ("To enable the following instructions:",)
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}

# Whether this module set the variable (and so may take it back), and its import hook.
_state = {"set_here": False, "hook": None}


def quiet_tensorflow_logs():
    """Keep TensorFlow's C++ logs quiet unless the user chose a level: sets TF_CPP_MIN_LOG_LEVEL
    to "3" if it is unset and, if TensorFlow is not imported yet, filters the lines its
    libraries print while they load. Returns the level in force, e.g. 3.

        quiet_tensorflow_logs()              # 3, or the user's own TF_CPP_MIN_LOG_LEVEL

    Call it before TensorFlow is imported: TensorFlow reads the variable once.
    """
    if VARIABLE not in os.environ:
        os.environ[VARIABLE] = DEFAULT_LEVEL
        _state["set_here"] = True
    level = _level()
    if level > 0 and "tensorflow" not in sys.modules and _state["hook"] is None:
        _state["hook"] = _QuietImport()
        sys.meta_path.insert(0, _state["hook"])
    return level


def show_tensorflow_logs():
    """Undo `quiet_tensorflow_logs()`: TensorFlow logs as it would without tfvae (if it is not
    imported yet). A TF_CPP_MIN_LOG_LEVEL the user set stays.

        show_tensorflow_logs()               # what `tfvae --verbose` does
    """
    if _state["set_here"] and os.environ.get(VARIABLE) == DEFAULT_LEVEL:
        del os.environ[VARIABLE]
    _state["set_here"] = False
    _remove_hook()


def is_tensorflow_log(line, level=3):
    """Is `line` a TensorFlow C++ log line that TF_CPP_MIN_LOG_LEVEL=`level` hides?
    Fatal ("F") lines never are: they say why the process is about to stop.

        is_tensorflow_log("I0000 00:00:17.76   31 cudart_stub.cc:31] Could not find cuda")  # True
    """
    if level <= 0:
        return False
    text = line.rstrip("\r\n")
    match = _RECORD.match(text)
    if match:
        return _SEVERITY[match.group(1) or match.group(2)] < min(level, 3)
    return text == _BANNER or text.startswith(_CONTINUATIONS)


@contextlib.contextmanager
def filtered_stderr(level=None):
    """Within the block, what is written to file descriptor 2 (C++ libraries included) is
    caught; on leaving it, everything but the TensorFlow log lines that `level` (default: the
    TF_CPP_MIN_LOG_LEVEL in force) hides is written to standard error.

        with filtered_stderr():
            import tensorflow
    """
    level = _level() if level is None else level
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2: nothing to filter
        yield
        return
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                caught.seek(0)
                text = caught.read().decode("utf-8", errors="replace")
                kept = "".join(line for line in text.splitlines(keepends=True)
                               if not is_tensorflow_log(line, level))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()
    finally:
        os.close(saved)


def _level():
    try:
        return int(os.environ.get(VARIABLE, "0"))
    except ValueError:  # TensorFlow reads an unparsable level as 0 too
        return 0


def _remove_hook():
    hook, _state["hook"] = _state["hook"], None
    if hook is not None and hook in sys.meta_path:
        sys.meta_path.remove(hook)


class _QuietImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: the first `import tensorflow` runs inside `filtered_stderr()`.
    The module keeps its own spec and loader; only its execution is wrapped."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        _remove_hook()  # one shot, and find_spec below must not come back here
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The module shows its real loader, as if no hook had been there.
        module.__loader__ = module.__spec__.loader = self.loader
        with filtered_stderr():
            self.loader.exec_module(module)
