"""Model files: one file per model, named ``canfvc-<name>.pt``, found by name in the model folders.

The model folders, searched in this order (:func:`model_folders`):

- the user's: ``$CANFVC_MODELS``, else ``models/`` in the user cache (``~/.cache/canfvc``);
- the package's: ``canfvc_codec/models``, the published models shipped in the wheel. In a
  checkout it is a link to the repository's ``models/``, where the published files live.

A name with an extension or a folder is a path to a file instead.

A model file is a ``torch.save`` of a plain dict (loaded with ``weights_only=True``)::

    {"format": "canfvc-model", "version": 1, "config": ModelConfig.to_dict(),
     "state_dict": {name: tensor}, "card": {...}}

Floating-point tensors are stored as fp16; the integer entropy tables (built by ``update()`` from
the fp16 weights) are stored as they are, so that encoder and decoder code with the same
integers. The model id written in every .cvc header is the first 8 bytes of the file's sha256.

Until trained weights exist, ``random-<config>`` (e.g. ``random-tiny``, ``random-lite``) names an
untrained model with seeded random weights. Its id is the sha256 prefix of a description (format
version, seed, configuration), so a decoder can recognise it without building every candidate;
should the initialisation ever change, the per-frame CRC check reports the mismatch.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path

import torch

from canfvc_codec.errors import ModelError, warn
from canfvc_codec.folders import user_models_dir
from canfvc_codec.networks.config import CONFIGS, ModelConfig, get_config
from canfvc_codec.networks.video import VideoModel

FORMAT = "canfvc-model"
FORMAT_VERSION = 1
MODEL_ID_BYTES = 8
FILE_PREFIX = "canfvc-"
FILE_SUFFIX = ".pt"
RANDOM_PREFIX = "random-"
RANDOM_SEED = 0
STORED_FLOAT = torch.float16
UNTRAINED_WARNING = "untrained model: output quality is meaningless"
HASH_CHUNK = 1 << 20


# The published models: package data in a wheel, a link to the repository's models/ in a checkout.
PACKAGE_MODELS = Path(__file__).resolve().parent / "models"


def model_folders() -> tuple[Path, ...]:
    """Where named models are looked up, first match first: the user's folder, the package's."""
    return (user_models_dir(), PACKAGE_MODELS)


def model_file_name(name: str) -> str:
    return f"{FILE_PREFIX}{name}{FILE_SUFFIX}"


def _warn_untrained(name: str) -> None:
    warn(f"{name}: {UNTRAINED_WARNING}")


def _stored_state(model: VideoModel) -> dict[str, torch.Tensor]:
    """The state dict as a file holds it: floating tensors in fp16, integer tables unchanged."""
    return {
        name: (t.detach().to("cpu", STORED_FLOAT) if t.is_floating_point() else t.detach().cpu())
        for name, t in model.state_dict().items()
    }


def _as_stored(model: VideoModel) -> VideoModel:
    """A copy of ``model`` with fp16-rounded weights and tables rebuilt from them, in eval mode.

    The copy is exactly what loading the saved file gives back.
    """
    stored = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        for tensor in stored.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(STORED_FLOAT))
    stored.update()
    return stored


def file_model_id(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.digest()[:MODEL_ID_BYTES]


def random_model_id(config_name: str, seed: int = RANDOM_SEED) -> bytes:
    """The id of ``random-<config_name>``: a hash of what determines its weights."""
    description = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "seed": seed,
        "config": get_config(config_name).to_dict(),
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).digest()[:MODEL_ID_BYTES]


def save_model(model: VideoModel, path: Path, card: dict | None = None) -> str:
    """Write ``model`` (fp16) to ``path`` atomically; returns the model id as hex.

    ``model`` itself is not changed: the fp16 rounding and table rebuild happen on a copy.
    """
    path = Path(path)
    stored = _as_stored(model)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": stored.config.to_dict(),
        "state_dict": _stored_state(stored),
        "card": dict(card or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)
    return file_model_id(path).hex()


def random_model(config_name: str, seed: int = RANDOM_SEED) -> tuple[VideoModel, bytes]:
    """An untrained model with seeded random weights, as if saved and loaded; (model, id)."""
    config = get_config(config_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoModel(config)
    return _as_stored(model), random_model_id(config_name, seed)


def _is_path(name_or_path: str) -> bool:
    """Anything with an extension or a folder is a file (``in.y4m`` given by mistake is read as a
    file, and refused as one); anything else is a model name."""
    candidate = Path(name_or_path)
    return bool(candidate.suffix) or candidate.parent != Path(".")


def _model_path(name_or_path: str) -> Path:
    """The file a path or a model name stands for: for a name, the first model folder that holds
    it (the user's when none does, so that the error names where to put it)."""
    if _is_path(name_or_path):
        return Path(name_or_path)
    paths = [folder / model_file_name(name_or_path) for folder in model_folders()]
    return next((path for path in paths if path.is_file()), paths[0])


def _read_model_file(path: Path) -> tuple[VideoModel, dict]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling or zip failure means the file is not usable
        raise ModelError(f"{path}: not a readable model file ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a canfvc model file")
    if payload.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {payload.get('version')} is not supported "
            f"(this canfvc reads version {FORMAT_VERSION})"
        )
    model = VideoModel(ModelConfig.from_dict(payload["config"]))
    state = {
        name: (t.float() if t.is_floating_point() else t)
        for name, t in payload["state_dict"].items()
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{path}: weights do not fit the model configuration ({first})") from None
    return model.eval(), payload.get("card", {})


def load_model(name_or_path: str, device: str = "cpu") -> tuple[VideoModel, bytes]:
    """(model in eval mode on ``device``, 8-byte id) for a name, a path or ``random-<config>``."""
    model, model_id, _ = load_model_and_card(name_or_path, device)
    return model, model_id


def load_model_and_card(name_or_path: str, device: str = "cpu") -> tuple[VideoModel, bytes, dict]:
    """:func:`load_model` and the model card stored with it (empty for random models)."""
    if name_or_path.startswith(RANDOM_PREFIX):
        config_name = name_or_path[len(RANDOM_PREFIX) :]
        if config_name not in CONFIGS:
            raise ModelError(
                f"unknown model {name_or_path!r} (random models: "
                + ", ".join(RANDOM_PREFIX + c for c in CONFIGS)
                + ")"
            )
        _warn_untrained(name_or_path)
        model, model_id = random_model(config_name)
        return model.to(device), model_id, {}
    path = _model_path(name_or_path)
    if not path.is_file():
        hint = ""
        if not _is_path(name_or_path) and name_or_path in CONFIGS:
            hint = (
                f" (no trained weights yet; --model {RANDOM_PREFIX}{name_or_path} runs untrained)"
            )
        raise ModelError(f"model {name_or_path!r} not found: {_not_found(name_or_path)}{hint}")
    model, card = _read_model_file(path)
    if card.get("untrained"):
        _warn_untrained(str(path))
    return model.to(device), file_model_id(path), card


def model_config(name_or_path: str) -> ModelConfig:
    """The configuration of a configuration name, ``random-<config>``, a model name or file."""
    name = name_or_path.removeprefix(RANDOM_PREFIX)
    if name in CONFIGS and not _model_path(name_or_path).is_file():
        return get_config(name)
    path = _model_path(name_or_path)
    if not path.is_file():
        raise ModelError(f"model {name_or_path!r} not found: {_not_found(name_or_path)}")
    return _read_model_file(path)[0].config


def _not_found(name_or_path: str) -> str:
    if _is_path(name_or_path):
        return f"{name_or_path} does not exist"
    folders = " nor ".join(str(folder) for folder in model_folders())
    return f"no {model_file_name(name_or_path)} in {folders}"


def find_model_by_id(model_id: bytes) -> Path | None:
    """The model file in the model folders whose id is ``model_id``, if any."""
    for folder in model_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(f"*{FILE_SUFFIX}")):
            if file_model_id(path) == model_id:
                return path
    return None


def load_model_by_id(model_id: bytes, device: str = "cpu") -> tuple[VideoModel, bytes]:
    """The model a .cvc header names: one of the random models or a file in the model folders."""
    for config_name in CONFIGS:
        if random_model_id(config_name) == model_id:
            return load_model(RANDOM_PREFIX + config_name, device)
    path = find_model_by_id(model_id)
    if path is None:
        raise ModelError(
            f"no model with id {model_id.hex()} in "
            + " nor ".join(str(folder) for folder in model_folders())
            + " (give one with --model)"
        )
    return load_model(str(path), device)
