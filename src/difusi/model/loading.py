"""Load a LLaDA checkpoint (optionally with a PEFT adapter) and its tokenizer in one call, and the
checks that come first: hub download, and a complete checkpoint for its config."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from difusi.errors import DifusiError, first_line
from difusi.io import read_json, write_json
from difusi.model.configuration_llada import LLaDAConfig
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.model.tokenizer import load_tokenizer


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    base: str | Path,
    adapter: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    merge: bool = True,
):
    """(model, tokenizer) for `base`, a LLaDA checkpoint directory or hub id, on `device`.

    dtype defaults to bf16 on GPU and fp32 on CPU; "auto" keeps the checkpoint's own. With `adapter`
    (a PEFT directory), the adapter is applied and, by default, merged: a sampler calls the model hundreds of times per answer, and
    merged weights cost nothing per call. The tokenizer comes from the base checkpoint.
    Any loading failure is one DifusiError naming what failed; unlike transformers' `from_pretrained`,
    a checkpoint with a missing, unexpected or mis-shaped tensor is one too (a run on a partly random
    model would report numbers that mean nothing).
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        # Resolved once: the tokenizer then loads from the same folder, with no further hub lookups.
        directory = resolve_checkpoint_dir(base)
        check_checkpoint_tensors(directory)
        model = LLaDAModelLM.from_pretrained(directory, dtype=dtype)
    except (OSError, ValueError) as error:
        raise DifusiError(f"base model {str(base)!r} does not load: {first_line(error)}") from error
    model.name_or_path = model.config.name_or_path = str(base)  # the hub id, not the cache folder
    tokenizer = load_tokenizer(directory)
    # The official config.json names no BOS; take the tokenizer's, so the Trainer has nothing to "align".
    for name in ("bos", "eos", "pad"):
        if getattr(model.config, f"{name}_token_id", None) is None:
            setattr(model.config, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise DifusiError(
                f"{adapter} holds no adapter_config.json; pass the adapter/ dir of a `difusi train` run"
            )
        model = apply_adapter(model, adapter)
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), tokenizer


# Beside a PEFT adapter: the attention it was trained with, when that differs from its base's (an
# adapter trained with the block objective on a bidirectional base), applied before it is attached.
ATTENTION_FILE = "attention.json"
ATTENTION_KEYS = ("causal", "block_size", "token_shift")


def save_attention(config: LLaDAConfig, adapter_dir: str | Path) -> None:
    """Record `config`'s attention (causal, block_size, token_shift) beside an adapter saved from a
    model with it."""
    write_json(Path(adapter_dir) / ATTENTION_FILE, {key: getattr(config, key) for key in ATTENTION_KEYS})


def apply_adapter(model, adapter: str | Path):
    """`model` with a PEFT adapter attached (a PeftModel), its attention first set as the adapter's
    `attention.json` records (adapters saved without one keep their base's)."""
    from peft import PeftModel

    recorded = Path(adapter) / ATTENTION_FILE
    if recorded.is_file():
        for key, value in read_json(recorded).items():
            if key in ATTENTION_KEYS:
                setattr(model.config, key, value)
    return PeftModel.from_pretrained(model, str(adapter))


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


def check_checkpoint_tensors(path: Path) -> None:
    """Fail with one line naming the tensor if an (undamaged) checkpoint lacks one its config needs,
    has one it does not, or has one of another shape."""
    found = check_checkpoint_dir(path)
    expected = {n: tuple(s) for n, s in state_dict_shapes(LLaDAConfig.from_pretrained(path)).items()}
    for name, shape in expected.items():
        if name not in found:
            raise ValueError(f"checkpoint {path} is missing tensor {name}")
        if found[name] != shape:
            raise ValueError(
                f"checkpoint tensor {name} has shape {list(found[name])}; the config expects {list(shape)}"
            )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(f"checkpoint {path} has unexpected tensor {unexpected[0]}")


def state_dict_shapes(config: LLaDAConfig) -> dict[str, torch.Size]:
    """Names and shapes of the state dict a config implies (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = LLaDAModelLM(config)
    # A tied head is saved once, under the embedding's name (as transformers saves it).
    tied = set(model._tied_weights_keys) if config.tie_word_embeddings else set()
    return {name: t.shape for name, t in model.state_dict().items() if name not in tied}
