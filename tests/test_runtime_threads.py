"""runtime.set_threads: a profile's thread count never exceeds the cores this process has."""

from __future__ import annotations

import pytest
import torch

from s2slib import runtime


def test_threads_are_capped_at_the_available_cores_and_the_cap_is_announced(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    try:
        assert runtime.set_threads(8) == 2 and torch.get_num_threads() == 2
        assert "8 PyTorch threads asked for" in capsys.readouterr().out
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        assert capsys.readouterr().out == ""
        with pytest.raises(ValueError, match="at least 1"):
            runtime.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_available_cores_is_positive():
    assert runtime.available_cores() >= 1
