"""Progress that suits where the output goes: tqdm's bar on a terminal, one plain line every few seconds in a log.

tqdm redraws its bar with a carriage return after every update; written to a file or a pipe (CI, a `nohup` log,
systemd's journal) each redraw becomes a line of its own, thousands for one run. Off a terminal the same tqdm
object is kept (so `update`, `set_postfix`, `close` and `tqdm.write` work as usual), but it draws at most once per
`LOG_INTERVAL_S`, without the bar graphic, and each draw is a complete line.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from tqdm import tqdm

#: Seconds between progress lines when the output is not a terminal.
LOG_INTERVAL_S = 5.0
_LOG_FORMAT = "{n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Lines(io.TextIOBase):
    """tqdm's redraws ('\\r' + status) as one line each; clearing writes and lone newlines are dropped."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LogProgress(tqdm):
    """Off a terminal a postfix or description change waits for the next timed line instead of drawing one."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)


def progress_bar(iterable=None, *, file=None, interval_s: float = LOG_INTERVAL_S, **options: Any) -> tqdm:
    """`tqdm(iterable, **options)` on a terminal; otherwise a line at most every `interval_s` (and a final one)."""
    stream = file if file is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, **options)
    options["mininterval"] = max(options.get("mininterval", 0.0), interval_s)
    options.setdefault("bar_format", ("{desc}: " if options.get("desc") else "") + _LOG_FORMAT)
    return _LogProgress(iterable, file=_Lines(stream), dynamic_ncols=False, **options)
