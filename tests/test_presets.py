"""Encoder presets: each names refinement steps the encoder accepts, ordered by time."""

from __future__ import annotations

import itertools

import pytest

from canfvc_codec.encoder.options import EncodeOptions, check_options
from canfvc_codec.encoder.presets import (
    DEFAULT_PRESET,
    MAX_REFINE_STEPS,
    PRESETS,
    check_refine_steps,
    refine_steps,
)
from canfvc_codec.errors import UsageError


def test_default_preset_is_the_encoder_without_refinement():
    assert refine_steps(DEFAULT_PRESET, None, None) == (0, 0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_gives_steps_the_encoder_accepts(name):
    intra, inter = refine_steps(name, None, None)
    assert (intra, inter) == (PRESETS[name].refine, PRESETS[name].refine_inter)
    assert 0 <= intra <= MAX_REFINE_STEPS and 0 <= inter <= MAX_REFINE_STEPS
    check_options(EncodeOptions(refine=intra, refine_inter=inter))  # raises if refused


def test_presets_are_ordered_by_work():
    """Each preset after the first refines at least as much, in I-frames and in P-frames."""
    steps = [refine_steps(name, None, None) for name in PRESETS]
    for (intra, inter), (next_intra, next_inter) in itertools.pairwise(steps):
        assert intra <= next_intra and inter <= next_inter
    assert len(set(steps)) == len(steps)


def test_refinement_steps_are_bounded():
    check_refine_steps(MAX_REFINE_STEPS)
    for steps in (-1, MAX_REFINE_STEPS + 1):
        with pytest.raises(UsageError, match="--refine-inter must be 0"):
            check_refine_steps(steps, "--refine-inter")


def test_options_override_the_preset():
    assert refine_steps("slow", 4, None) == (4, 4)
    assert refine_steps("slow", None, 3) == (12, 3)
    assert refine_steps("veryslow", 2, 0) == (2, 0)


def test_eval_codes_with_the_preset_steps(tmp_path, monkeypatch):
    """``canfvc eval --preset`` hands the encoder the steps ``canfvc encode --preset`` uses."""
    from canfvc_codec.cli import main
    from canfvc_codec.eval import command

    calls = []
    monkeypatch.setattr(
        command, "evaluate", lambda *args, **kwargs: calls.append(kwargs) or {"sequences": {}}
    )
    config = tmp_path / "c.json"
    config.write_text("{}")
    for flags, expected in (
        ((), (0, 0)),
        (("--preset", "slower"), (12, 4)),
        (("--preset", "slow", "--refine-inter", "2"), (12, 2)),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["eval", "--config", str(config), "--out", str(tmp_path / "o"), *flags])
        assert exit_info.value.code == 0
        assert (calls[-1]["refine"], calls[-1]["refine_inter"]) == expected
