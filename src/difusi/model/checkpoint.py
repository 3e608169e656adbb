"""Checkpoint folders: a hub id or a local path resolved to one local folder, and the checks that
name what is wrong with a folder in one line (no config.json, another model type, a missing or
truncated shard) before anything is loaded from it."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open

from difusi.errors import DifusiError, first_line
from difusi.io import read_json
from difusi.model.configuration_llada import LLaDAConfig

# What a checkpoint folder needs: config, weights, tokenizer (all JSON) and the remote-code files
# that config.json's auto_map names, so a merged copy stays loadable with trust_remote_code too.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.py"]


# `from_pretrained` arguments that say how to reach the hub; passed on to the download.
HUB_DOWNLOAD_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")


def resolve_checkpoint_dir(name_or_path: str | Path, **hub_kwargs) -> Path:
    """A local checkpoint directory, downloading a hub id's checkpoint files if needed
    (`hub_kwargs`: any of HUB_DOWNLOAD_KWARGS, as `from_pretrained` takes them)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(f"checkpoint {path} is not a directory; pass a LLaDA checkpoint directory")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=HUB_PATTERNS, **hub_kwargs))
    except Exception as error:  # the hub client raises many types; all mean "not available here"
        if constants.HF_HUB_OFFLINE:
            hint = "offline mode is on (HF_HUB_OFFLINE=1) and the local cache lacks it; download it first"
        else:
            hint = "check the id and the network"
        raise OSError(
            f"could not download LLaDA checkpoint {name_or_path!r} ({first_line(error)}); {hint}, "
            "or pass a local checkpoint directory"
        ) from error


def check_checkpoint_dir(path: Path) -> dict[str, tuple[int, ...]]:
    """Fail with one clear line if a local directory is not an undamaged LLaDA checkpoint: config.json
    missing, malformed or of another model type; a shard missing or truncated. Returns the name and
    shape of every tensor, read from the shards' headers."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {path}; point at a LLaDA checkpoint directory")
    try:
        model_type = read_json(config_file).get("model_type")
    except DifusiError as error:
        raise ValueError(f"{error}; fix or re-download it") from error
    if model_type != LLaDAConfig.model_type:
        raise ValueError(
            f"{config_file} has model_type {model_type!r}; expected 'llada': pass a LLaDA checkpoint"
        )
    index_file = path / "model.safetensors.index.json"
    if index_file.is_file():
        shards = sorted(set(read_json(index_file)["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise FileNotFoundError(f"shard {missing[0]} listed in {index_file.name} is missing from {path}")
    elif (path / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}")

    found = {}
    for shard in shards:
        try:
            with safe_open(path / shard, framework="pt") as f:
                found.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})  # noqa: SIM118 (safe_open is not iterable)
        except SafetensorError as error:  # e.g. a download cut short: "file not fully covered"
            raise OSError(
                f"shard {path / shard} is damaged or incomplete ({first_line(error)}); "
                "delete it and download the checkpoint again"
            ) from error
    return found
