"""The evaluation config parser: good configs load, every mistake gives one clear CanfvcError."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from canfvc_codec.datasets import CLIP_DOWNSCALE, DEV_RANGES, VTEST_SIZE
from canfvc_codec.errors import CanfvcError
from canfvc_codec.eval.config import load_config, parse_config

CONFIGS = Path(__file__).resolve().parent.parent / "bench" / "configs"


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def raw_file(tmp_path: Path) -> Path:
    path = tmp_path / "seq.yuv"
    path.write_bytes(bytes(64 * 64 * 3 // 2))
    return path


def test_raw_sequence_loads_with_defaults(tmp_path, raw_file):
    config = load_config(
        _write(
            tmp_path,
            {
                "gop": 12,
                "sequences": [{"name": "seq", "path": "seq.yuv", "size": "64x64", "frames": 1}],
            },
        )
    )
    (seq,) = config.sequences
    assert seq.path == raw_file and seq.size == (64, 64) and seq.gop == 12
    assert seq.fps == Fraction(30) and seq.start == 0 and seq.bit_depth == 8 and seq.is_raw


def test_clip_key_goes_through_the_resolver(tmp_path, raw_file):
    seen = []

    def resolver(name):
        seen.append(name)
        return raw_file

    config = parse_config(
        {
            "sequences": [
                {
                    "name": "c",
                    "clip": "bikes.mp4",
                    "size": [64, 64],
                    "frames": 1,
                    "fps": "30000/1001",
                }
            ]
        },
        tmp_path,
        clip_resolver=resolver,
    )
    assert seen == ["bikes.mp4"] and config.sequences[0].fps == Fraction(30000, 1001)


def test_shipped_configs_parse(tmp_path, raw_file):
    for path in sorted(CONFIGS.glob("*.json")):
        config = load_config(path, clip_resolver=lambda name: raw_file)
        assert config.sequences and all(s.frames > 0 for s in config.sequences)
    dev = load_config(CONFIGS / "dev.json", clip_resolver=lambda name: raw_file)
    assert [(s.name, s.start, s.frames, s.gop) for s in dev.sequences] == [
        ("bikes", 186, 64, 32),
        ("bigbuckbunny", 100, 32, 32),
        ("vtest", 700, 64, 32),
    ]
    # The development ranges of the data builder (datasets.DEV_RANGES), in the same order.
    entries = json.loads((CONFIGS / "dev.json").read_text())["sequences"]
    assert [(e["clip"], e["start"], e["frames"]) for e in entries] == [
        (r.clip, r.start, r.count) for r in DEV_RANGES
    ]
    vtest = dev.sequences[2]
    assert vtest.size == VTEST_SIZE and vtest.downscale == CLIP_DOWNSCALE["vtest.avi"] == 2
    assert [s.downscale for s in dev.sequences[:2]] == [1, 1]


def test_only_keeps_the_named_sequences_without_looking_for_the_others(tmp_path, raw_file):
    looked_up = []

    def resolver(name):
        looked_up.append(name)
        return raw_file

    dev = load_config(CONFIGS / "dev.json", clip_resolver=resolver, only=("vtest",))
    assert [s.name for s in dev.sequences] == ["vtest"] and looked_up == ["vtest.avi"]
    with pytest.raises(CanfvcError, match="no sequence named 'nope'"):
        load_config(CONFIGS / "dev.json", clip_resolver=resolver, only=("nope",))


def test_a_clip_missing_from_the_cache_is_one_line_naming_the_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path))  # an empty cache; nothing is fetched
    with pytest.raises(CanfvcError) as info:
        load_config(CONFIGS / "dev.json", only=("vtest",))
    message = str(info.value)
    assert "vtest.avi is not in the cache" in message and "\n" not in message
    assert message.endswith("python -m canfvc_codec.datasets --all")
    assert not (tmp_path / "clips" / "vtest.avi").exists()


@pytest.mark.parametrize(
    ("sequence", "message"),
    [
        ({"path": "seq.yuv", "size": "64x64", "frames": 1}, "missing key 'name'"),
        ({"name": "s", "size": "64x64", "frames": 1}, "missing key 'path'"),
        ({"name": "s", "path": "seq.yuv", "frames": 1}, "missing key 'size'"),
        ({"name": "s", "path": "seq.yuv", "size": "64x64"}, "missing key 'frames'"),
        ({"name": "s", "path": "seq.yuv", "size": "64by64", "frames": 1}, "is not WIDTHxHEIGHT"),
        ({"name": "s", "path": "seq.yuv", "size": "63x64", "frames": 1}, "must be even"),
        ({"name": "s", "path": "seq.yuv", "size": "0x64", "frames": 1}, "out of range"),
        ({"name": "s", "path": "nope.yuv", "size": "64x64", "frames": 1}, "does not exist"),
        ({"name": "s", "path": "seq.yuv", "size": "64x64", "frames": 0}, "frames must be"),
        ({"name": "s", "path": "seq.yuv", "size": "64x64", "frames": 1, "fps": "x"}, "fps"),
        (
            {"name": "s", "path": "seq.yuv", "size": "64x64", "frames": 1, "bit_depth": 12},
            "bit_depth",
        ),
        ({"name": "s", "path": "seq.yuv", "size": "64x64", "frames": 1, "gpo": 3}, "unknown key"),
        ({"name": "a b", "path": "seq.yuv", "size": "64x64", "frames": 1}, "name may use"),
    ],
)
def test_bad_sequences_raise_one_clear_line(tmp_path, raw_file, sequence, message):
    with pytest.raises(CanfvcError, match=message) as info:
        load_config(_write(tmp_path, {"sequences": [sequence]}))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"gop": 32}, "missing key 'sequences'"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_files_raise(tmp_path, content, message):
    with pytest.raises(CanfvcError, match=message):
        load_config(_write(tmp_path, content))


def test_missing_config_and_duplicate_names(tmp_path, raw_file):
    with pytest.raises(CanfvcError, match="does not exist"):
        load_config(tmp_path / "absent.json")
    binary = tmp_path / "video.y4m"  # a slip: a video given as the config
    binary.write_bytes(b"YUV4MPEG2 W64 H48\nFRAME\n\x8c\xff")
    with pytest.raises(CanfvcError, match="not a JSON config"):
        load_config(binary)
    entry = {"name": "s", "path": "seq.yuv", "size": "64x64", "frames": 1}
    with pytest.raises(CanfvcError, match="appears twice"):
        load_config(_write(tmp_path, {"sequences": [entry, entry]}))
