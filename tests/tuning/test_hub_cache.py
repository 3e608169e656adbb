"""The real hub's layout, offline: a local Hugging Face cache holding a small stand-in under
`GSAI-ML/LLaDA-8B-Instruct` (bf16 shards, a config.json with no dtype and no BOS id, the two remote
code files), used through the CLI and the loaders as a user with a downloaded checkpoint would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors import safe_open

from difusi import LLaDAModelLM
from difusi.cli import main
from difusi.io import atomic_directory
from difusi.model import loading
from difusi.tuning.merge import merge_adapter
from difusi.tuning.train import train

HUB_ID = "GSAI-ML/LLaDA-8B-Instruct"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REMOTE_CODE = ("configuration_llada.py", "modeling_llada.py")


def build_hub_cache(root: Path, checkpoint: Path) -> Path:
    """A hub cache at `root` (blobs, a snapshot of symlinks, refs/main) of `checkpoint` in the
    official layout; returns the snapshot folder."""
    staging = root / "staging"
    LLaDAModelLM.from_pretrained(checkpoint, dtype=torch.bfloat16).save_pretrained(
        staging, max_shard_size="100KB"
    )
    config = json.loads((staging / "config.json").read_text())
    for key in ("dtype", "bos_token_id"):  # the official config.json has neither
        config.pop(key, None)
    config |= {
        "precision": "amp_bf16",
        "auto_map": {
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModel": "modeling_llada.LLaDAModelLM",
        },
    }
    (staging / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(checkpoint / name, staging / name)
    for name in REMOTE_CODE:
        (staging / name).write_text("# the official remote code (never run by difusi)\n")
    repo = root / "models--GSAI-ML--LLaDA-8B-Instruct"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, file in enumerate(sorted(staging.iterdir())):
        blob = repo / "blobs" / f"{index:040x}"
        shutil.move(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    staging.rmdir()
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_checkpoint) -> Path:
    root = tmp_path_factory.mktemp("hub")
    build_hub_cache(root, tiny_checkpoint)
    return root


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> Path:
    """The cache as this process's hub, offline (huggingface_hub reads both at call time)."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_cache / "models--GSAI-ML--LLaDA-8B-Instruct" / "snapshots" / COMMIT


def shard_dtypes(folder: Path) -> dict[str, str]:
    found = {}
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, framework="pt") as f:
            found |= {name: f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118
    return found


def test_cli_generates_from_the_cache_with_offline_mode_on(hub_cache):
    env = os.environ | {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    command = ["generate", "--model", HUB_ID, "--prompt", "Apa ibu kota Indonesia?"]
    command += ["--gen-length", "8", "--steps", "8", "--block-length", "8"]
    result = subprocess.run(
        [sys.executable, "-m", "difusi", *command], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_model_and_tokenizer_come_from_the_resolved_snapshot(offline_hub, monkeypatch):
    asked = []
    real_load_tokenizer = loading.load_tokenizer
    monkeypatch.setattr(
        loading, "load_tokenizer", lambda path: asked.append(path) or real_load_tokenizer(path)
    )
    model, tokenizer = loading.load_model(HUB_ID, device="cpu")
    assert asked == [offline_hub]  # no second lookup by hub id
    assert model.name_or_path == model.config.name_or_path == HUB_ID  # not the cache folder
    # config.json names no BOS: taken from the tokenizer, so the Trainer finds nothing to "align"
    assert (
        model.config.bos_token_id
        == tokenizer.bos_token_id
        == tokenizer.convert_tokens_to_ids("<|startoftext|>")
    )


def test_adapter_records_the_hub_id_and_merge_keeps_the_official_layout(offline_hub, make_config, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter = train(make_config(base=HUB_ID, max_steps=1)) / "adapter"
    hub_lookups = [str(w.message) for w in caught if "remote file" in str(w.message)]
    assert not hub_lookups  # none while saving the adapter
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert str(offline_hub.parent) not in (adapter / "README.md").read_text()

    merged = merge_adapter(HUB_ID, adapter, tmp_path / "merged")
    config = json.loads((merged / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["auto_map"]["AutoModel"] == "modeling_llada.LLaDAModelLM"
    assert all((merged / name).read_text() == (offline_hub / name).read_text() for name in REMOTE_CODE)
    base_tensors, merged_tensors = shard_dtypes(offline_hub), shard_dtypes(merged)
    assert sorted(merged_tensors) == sorted(base_tensors) and set(merged_tensors.values()) == {"BF16"}
    assert LLaDAModelLM.from_pretrained(merged, dtype="auto").dtype == torch.bfloat16


def test_merge_drops_an_auto_map_whose_code_it_cannot_copy(offline_hub, make_config, tmp_path):
    base = tmp_path / "no-code"
    shutil.copytree(offline_hub, base)  # follows the symlinks: plain files
    for name in REMOTE_CODE:
        (base / name).unlink()
    adapter = train(make_config(max_steps=1)) / "adapter"
    merged = merge_adapter(str(base), adapter, tmp_path / "merged")
    assert "auto_map" not in json.loads((merged / "config.json").read_text())
    assert not any((merged / name).exists() for name in REMOTE_CODE)


def test_an_id_missing_from_the_cache_says_offline_mode_is_on(offline_hub, capsys):
    assert main(["info", "GSAI-ML/LLaDA-8B-Base"]) == 2
    error = capsys.readouterr().err.strip()
    assert "'GSAI-ML/LLaDA-8B-Base'" in error and "offline mode is on (HF_HUB_OFFLINE=1)" in error
    assert "network" not in error and "\n" not in error


def damaged_copy(snapshot: Path, folder: Path) -> Path:
    shutil.copytree(snapshot, folder)
    return folder


def test_a_truncated_shard_is_one_line_naming_it(offline_hub, tmp_path, capsys):
    checkpoint = damaged_copy(offline_hub, tmp_path / "ckpt")
    shard = sorted(checkpoint.glob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted download
    assert main(["generate", "--model", str(checkpoint), "--prompt", "Halo"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"shard {shard} is damaged or incomplete" in error and "download the checkpoint again" in error
    assert "\n" not in error


def test_a_malformed_config_is_one_line_naming_it(offline_hub, tmp_path, capsys):
    checkpoint = damaged_copy(offline_hub, tmp_path / "ckpt")
    (checkpoint / "config.json").write_text('{"model_type" "llada"}')
    assert main(["generate", "--model", str(checkpoint), "--prompt", "Halo"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{checkpoint / 'config.json'} is not valid JSON" in error and "\n" not in error


def test_a_run_killed_with_sigkill_leaves_nothing_the_next_run_keeps(tmp_path):
    out = tmp_path / "out"
    script = (
        "import sys, time\nfrom difusi.io import atomic_directory\n"
        f"with atomic_directory({str(out)!r}) as staging:\n"
        "    (staging / 'half.parquet').write_text('x')\n    print('ready', flush=True)\n    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    child.kill()  # SIGKILL: no clean-up runs
    child.wait()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".out.difusi-{child.pid}-")
    live = tmp_path / f".out.difusi-{os.getpid()}-abcdefgh"  # a run still going: kept
    live.mkdir()
    with atomic_directory(out) as staging:
        (staging / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out"])


def test_a_block_adapter_round_trips_through_load_merge_and_the_hub_id(offline_hub, make_config, tmp_path):
    """An adapter trained with the block objective on a bidirectional hub base: load_model and merge
    give the block-size model it was trained as, and the merged checkpoint loads as one."""
    run = train(make_config(base=HUB_ID, max_steps=2, objective="block", block_size=4))
    recorded = json.loads((run / "adapter" / "attention.json").read_text())
    assert recorded == {"causal": False, "block_size": 4, "token_shift": False}
    model, tokenizer = loading.load_model(HUB_ID, run / "adapter", device="cpu")
    assert model.config.block_size == 4 and not model.config.causal
    assert LLaDAModelLM.from_pretrained(offline_hub).config.block_size is None  # the base is unchanged
    merged = merge_adapter(HUB_ID, run / "adapter", tmp_path / "merged")
    reloaded = LLaDAModelLM.from_pretrained(merged, dtype=torch.float32)
    assert json.loads((merged / "config.json").read_text())["block_size"] == 4
    ids = torch.randint(0, 500, (1, 12))
    torch.testing.assert_close(
        reloaded(ids).logits, model.float()(ids).logits, rtol=2e-2, atol=2e-2
    )  # bf16 merge
