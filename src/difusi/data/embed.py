"""Stage 5: dense embeddings of the stratified sample, for K-Means.

`indobert` (the seed's choice) is `indobenchmark/indobert-base-p1` (uncased, whatever the seed says),
`hf:NAME_OR_PATH` any Hugging Face encoder, both mean-pooled over the attention mask (the CLS vector of a
BERT that was never fine-tuned is a weak sentence embedding). `tfidf` is the offline fallback.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.io import atomic_path, cache_dir

log = logging.getLogger(__name__)

INDOBERT = "indobenchmark/indobert-base-p1"
MAX_TOKENS = 512
# Rows per cache file: a rerun reloads every finished chunk and computes only the rest.
CACHE_CHUNK = 2048
TFIDF_DIMENSIONS = 64  # LSA dimensions: enough to separate ten clusters, cheap to compute


def embed_texts(
    texts: list[str], embedder: str, seed: int, batch_size: int = 64, processes: Processes | None = None
) -> np.ndarray:
    """Float32 embeddings, one row per text, from `indobert`, `hf:NAME_OR_PATH` or `tfidf`; an
    encoder's work shared over `processes` (see `encoder_embeddings`)."""
    if embedder == "tfidf":
        return tfidf_embeddings(texts, seed)
    if embedder == "indobert":
        return encoder_embeddings(texts, INDOBERT, batch_size, processes)
    if embedder.startswith("hf:") and len(embedder) > 3:
        return encoder_embeddings(texts, embedder[3:], batch_size, processes)
    raise DifusiError(f"unknown --embedder {embedder!r}; use indobert, hf:NAME_OR_PATH or tfidf")


def tfidf_embeddings(texts: list[str], seed: int) -> np.ndarray:
    """TF-IDF of word uni- and bigrams reduced by truncated SVD and L2-normalised (needs no download)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    # Single-letter tokens count too: short synthetic or poem rows may have little else.
    vectorizer = TfidfVectorizer(
        token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2), max_features=30_000, sublinear_tf=True
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no word characters anywhere: every row embeds alike
        return np.zeros((len(texts), 1), dtype=np.float32)
    dimensions = min(TFIDF_DIMENSIONS, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if dimensions < 1:
        return matrix.toarray().astype(np.float32)
    reduced = TruncatedSVD(n_components=dimensions, random_state=seed).fit_transform(matrix)
    return normalize(reduced).astype(np.float32)


def encoder_embeddings(
    texts: list[str], name: str, batch_size: int = 64, processes: Processes | None = None
) -> np.ndarray:
    """Mean-pooled last hidden states of a transformers encoder, GPU when present, cached on disk.

    Texts are processed longest first in length-sorted batches (little padding); every chunk of
    CACHE_CHUNK rows is saved under a key of the encoder name and the chunk's texts. With
    `processes` (every process of a launch calls this) each embeds its share of the chunks on its
    own device and every process gets every row, as one process computes them.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    processes = processes or Processes()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModel.from_pretrained(name)
    except (OSError, ValueError) as error:  # offline hub, missing repo or a path without a model
        raise DifusiError(
            f"could not load the encoder {name} ({type(error).__name__}); "
            "without access to the Hugging Face Hub use --embedder tfidf"
        ) from error
    device = processes.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    order = np.argsort([-len(text) for text in texts], kind="stable")
    chunks = [order[start : start + CACHE_CHUNK] for start in range(0, len(texts), CACHE_CHUNK)]
    store = cache_dir() / "embeddings"
    mine = processes.share(chunks)
    if processes.world > 1:
        log.info(
            "process %d of %d embeds %s of the %s rows", processes.rank + 1, processes.world,
            f"{sum(map(len, mine)):,}", f"{len(texts):,}",
        )  # fmt: skip
    with tqdm(total=sum(map(len, mine)), desc=f"embed ({name})", unit="row", disable=None) as bar:
        computed = []
        for rows in mine:
            chunk = [texts[i] for i in rows]
            path = store / f"{_chunk_key(name, chunk)}.npy"
            if path.exists():
                computed.append(np.load(path))
                bar.update(len(rows))
                continue
            vectors = np.concatenate(
                [
                    _mean_pooled(model, tokenizer, chunk[i : i + batch_size], device, bar)
                    for i in range(0, len(chunk), batch_size)
                ]
            )
            _save_atomically(path, vectors)
            computed.append(vectors)
    result = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for rows, vectors in zip(chunks, processes.gather(computed), strict=True):
        result[rows] = vectors
    return result


def _mean_pooled(model, tokenizer, texts: list[str], device, bar: tqdm) -> np.ndarray:
    import torch

    # The seed truncates at 512 tokens; a smaller encoder may have fewer positions.
    limit = min(MAX_TOKENS, getattr(model.config, "max_position_embeddings", MAX_TOKENS))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    batch = {key: value.to(device) for key, value in batch.items()}
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state.float()  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    bar.update(len(texts))
    return pooled.cpu().numpy().astype(np.float32)


def _chunk_key(name: str, texts: list[str]) -> str:
    digest = hashlib.sha256(f"{name}\0{MAX_TOKENS}".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _save_atomically(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)
