"""Ctrl-C and SIGTERM, noticed however deep they land.

Python turns SIGINT into KeyboardInterrupt, but not everywhere it can arrive: inside a DuckDB
query the engine catches it, cancels the query and raises its own error ("Query
interrupted"), which a stage may then wrap as one of ours; SIGTERM (what `systemctl stop`
sends) kills the process without a word by default. The CLI installs `on_signal` for both, so
the signal is recorded here before anything else sees it, and `pipeline.run` and the CLI ask
`interrupted_by()` to tell an interrupted run from a failed one.
"""

from __future__ import annotations

import signal
from types import FrameType

_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_received: list[str] = []


def on_signal(signum: int, frame: FrameType | None) -> None:
    """Signal handler: remember the signal, then interrupt like Ctrl-C does."""
    _received.append(_NAMES.get(signal.Signals(signum), signal.Signals(signum).name))
    raise KeyboardInterrupt(_received[-1])


def install() -> None:
    """Handle SIGINT and SIGTERM with `on_signal` (main thread only; the CLI calls it)."""
    for signum in _NAMES:
        signal.signal(signum, on_signal)


def interrupted_by() -> str | None:
    """ "Ctrl-C" or "SIGTERM" once one was received in this process, else None."""
    return _received[0] if _received else None


def clear() -> None:
    """Forget received signals (for a process that goes on, such as a test)."""
    _received.clear()
