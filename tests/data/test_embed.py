"""Stage 5-6: embedders (a tiny local BERT for the hf: path, TF-IDF) and the cluster picture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from difusi.data import embed
from difusi.data.cluster import kmeans_clusters, plot_clusters
from difusi.data.embed import embed_texts
from difusi.errors import DifusiError

WORDS = [
    "apa",
    "kabar",
    "baik",
    "saya",
    "pergi",
    "ke",
    "pasar",
    "hari",
    "ini",
    "besok",
    "rumah",
    "makan",
    "nasi",
    "goreng",
    "enak",
    "sekali",
]
TEXTS = ["Apa kabar?", "saya pergi ke pasar hari ini", "nasi goreng enak sekali", "besok", "rumah makan nasi"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT (hidden 16) with a 22-entry WordPiece vocabulary, saved locally."""
    path = tmp_path_factory.mktemp("bert") / "tiny-bert"
    path.mkdir()
    vocab = path / "vocab.txt"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", *WORDS]
    vocab.write_text("\n".join(tokens) + "\n")
    BertTokenizer(vocab_file=str(vocab), do_lower_case=True).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(embed, "cache_dir", lambda: tmp_path)
    return tmp_path / "embeddings"


def test_hf_embedder_mean_pools_over_the_attention_mask(tiny_bert, cache):
    vectors = embed_texts(TEXTS, f"hf:{tiny_bert}", seed=0, batch_size=2)
    assert vectors.shape == (5, 16) and vectors.dtype == np.float32
    model = BertModel.from_pretrained(tiny_bert).eval()
    tokenizer = BertTokenizer.from_pretrained(tiny_bert)
    for text, vector in zip(TEXTS, vectors, strict=True):
        # Alone, without padding, mean pooling is the plain mean of the hidden states.
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(vector, hidden.mean(dim=0).numpy(), atol=1e-5)


def test_hf_embeddings_are_cached_by_content(tiny_bert, cache, monkeypatch):
    first = embed_texts(TEXTS, f"hf:{tiny_bert}", seed=0)
    assert len(list(cache.glob("*.npy"))) == 1

    def no_model_runs(*args):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(embed, "_mean_pooled", no_model_runs)
    np.testing.assert_array_equal(embed_texts(TEXTS, f"hf:{tiny_bert}", seed=0), first)
    with pytest.raises(AssertionError, match="the cache should have answered"):
        embed_texts([*TEXTS, "hari baru"], f"hf:{tiny_bert}", seed=0)


def test_unreachable_encoder_suggests_tfidf(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", offline)
    with pytest.raises(DifusiError) as error:
        embed_texts(TEXTS, "indobert", seed=0)
    assert str(error.value) == (
        "could not load the encoder indobenchmark/indobert-base-p1 (OSError); "
        "without access to the Hugging Face Hub use --embedder tfidf"
    )


def test_tfidf_embeddings_and_kmeans():
    texts = [f"{w} {v}" for w in WORDS for v in ("pagi", "malam")]
    vectors = embed_texts(texts, "tfidf", seed=0)
    # 32 rows, 18 words + 32 bigrams = 50 features: the SVD keeps min(64, 50 - 1, 32 - 1) = 31.
    assert vectors.shape == (32, 31)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, embed_texts(texts, "tfidf", seed=0))
    labels = kmeans_clusters(vectors, 3, seed=42)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert embed_texts(["?", "!"], "tfidf", seed=0).shape == (2, 1)  # no words at all


def test_small_cluster_picture_falls_back_to_pca(tmp_path):
    points = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    plot_clusters(points, np.arange(12) % 3, tmp_path / "clusters.png", seed=0, max_points=10)
    assert (tmp_path / "clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_processes_share_the_encoder_and_prepare_as_one(tiny_bert, cendol_dir, tmp_path, launcher):
    options = [
        "prepare", "--source", str(cendol_dir), "--embedder", f"hf:{tiny_bert}", "--strat-fraction", "1.0",
        "--clusters", "3", "--per-cluster", "40", "--test-fraction", "0.05", "--test-size", "10",
        "--no-plot-umap",
    ]  # fmt: skip
    one = subprocess.run(
        [sys.executable, "-m", "difusi", *options, "--out", str(tmp_path / "one")],
        env=os.environ | {"DIFUSI_CACHE": str(tmp_path / "cache-one")}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two_cache = tmp_path / "cache-two"
    launched = launcher.run(
        "ddp", ["-m", "difusi", *options, "--out", str(tmp_path / "two")], {"DIFUSI_CACHE": str(two_cache)}
    )
    shares = re.findall(r"process (\d) of 2 embeds ([\d,]+) of the ([\d,]+) rows", launched.stderr)
    assert sorted(rank for rank, _, _ in shares) == ["1", "2"]
    assert sum(int(mine.replace(",", "")) for _, mine, _ in shares) == int(shares[0][2].replace(",", ""))

    # More than one chunk of rows, each embedded once, by one of the two processes.
    chunks = sorted(two_cache.glob("embeddings/*.npy"))
    assert len(chunks) == len(list((tmp_path / "cache-one").glob("embeddings/*.npy"))) >= 2
    for name in ("train.parquet", "test.parquet", "data_card.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
