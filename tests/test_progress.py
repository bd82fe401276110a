"""The progress bar: one line per 10 s in a log file, the rate of this run's items only."""

from fastlift import progress


def _bar(monkeypatch, times, **kw):
    clock = iter(times)
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    return progress.Progress(**kw)


def test_a_resume_rates_only_the_items_done_now(capsys, monkeypatch):
    bar = _bar(monkeypatch, [0.0, 10.0], total=1000, start=500)
    bar.update(600)   # 100 in 10 s, 400 left
    assert capsys.readouterr().err.strip().endswith("600/1000 regions  10.0/s  ETA 00:00:40")


def test_a_log_file_gets_a_line_every_10_seconds_and_the_last(capsys, monkeypatch):
    bar = _bar(monkeypatch, [0.0, 11.0, 15.0, 16.0], total=30, unit="examples")
    bar.update(10)
    bar.update(20)   # 4 s after the last line: skipped
    bar.update(30)   # complete: always shown
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["10/30", "30/30"]
    assert all("examples" in line for line in lines)
