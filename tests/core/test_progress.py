"""utils.progress: bars only on a terminal, never carriage-return frames in a log."""
import io

from prunekit.utils.progress import is_terminal, progress_bar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_writes_nothing():
    log = io.StringIO()
    with progress_bar(total=5, desc="stage", stream=log) as bar:
        for _ in range(5):
            bar.update(1)
            bar.set_postfix(loss="0.1", refresh=False)
    assert log.getvalue() == "" and bar.n == 5 and bar.disable
    assert list(progress_bar(range(4), desc="rounds", stream=log)) == [0, 1, 2, 3]
    assert log.getvalue() == ""


def test_disabled_on_a_terminal_writes_nothing():
    tty = _Tty()
    assert list(progress_bar(iter("abc"), total=3, desc="x", enabled=False, stream=tty)) == ["a", "b", "c"]
    assert tty.getvalue() == ""


def test_terminal_gets_a_tqdm_bar():
    tty = _Tty()
    with progress_bar(total=2, desc="stage", stream=tty, leave=True) as bar:
        assert not bar.disable  # (tqdm sets disable on close)
        bar.update(2)
    assert "stage" in tty.getvalue() and "2/2" in tty.getvalue()


def test_is_terminal():
    assert is_terminal(_Tty()) and not is_terminal(io.StringIO()) and not is_terminal(object())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
