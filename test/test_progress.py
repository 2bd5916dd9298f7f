"""Progress output: tqdm's bar on a terminal, a few whole lines in a log."""

import io

from blip_caption_ros.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_at_most_every_interval():
    log = io.StringIO()
    with progress_bar(total=5000, file=log, desc="caching", unit="img", interval_s=3600) as bar:
        for _ in range(5000):
            bar.update()
            bar.set_postfix(bad=0)  # would draw on every call with plain tqdm
    lines = log.getvalue().splitlines(keepends=True)
    assert "\r" not in log.getvalue() and all(line.endswith("\n") for line in lines)
    assert lines[0].startswith("caching: 0/5000 img") and lines[-1].startswith("caching: 5000/5000 img")
    assert len(lines) <= 3  # the start, the end (and the close), nothing in between within the interval


def test_a_log_line_per_interval_when_updates_are_slower():
    log = io.StringIO()
    for _ in progress_bar(range(4), file=log, desc="bag", interval_s=0.0):
        pass
    assert [line.split(" [")[0] for line in log.getvalue().splitlines()][:5] == [
        "bag: 0/4 it", "bag: 1/4 it", "bag: 2/4 it", "bag: 3/4 it", "bag: 4/4 it"]


def test_a_terminal_keeps_the_redrawn_bar():
    terminal = Terminal()
    for _ in progress_bar(range(3), file=terminal, desc="bag", mininterval=0):
        pass
    assert "\r" in terminal.getvalue() and "|" in terminal.getvalue()  # tqdm's own bar, redrawn in place
