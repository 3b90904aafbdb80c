"""The progress bar writes to stderr only, and nothing at all when disabled."""

from __future__ import annotations

from onnxviz.runtime.progress import progress


def test_yields_every_item_in_order(capsys):
    assert list(progress(range(5), label="counting")) == [0, 1, 2, 3, 4]
    out, err = capsys.readouterr()
    assert out == ""
    assert "counting" in err


def test_disabled_is_silent(capsys):
    assert list(progress(iter("abc"), total=3, label="quiet", enabled=False)) == ["a", "b", "c"]
    assert capsys.readouterr() == ("", "")


def test_unsized_iterable_without_total(capsys):
    items = (i * i for i in range(4))
    assert list(progress(items, label="squares")) == [0, 1, 4, 9]
    out, err = capsys.readouterr()
    assert out == "" and "squares" in err


def test_total_for_a_generator(capsys):
    assert list(progress((c for c in "xy"), total=2, label="two")) == ["x", "y"]
    out, err = capsys.readouterr()
    assert out == "" and "two" in err


def test_stopping_early_closes_the_bar(capsys):
    bar = progress(range(100), label="early")
    assert next(bar) == 0
    bar.close()
    assert capsys.readouterr().out == ""
