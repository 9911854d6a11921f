"""Which worker of the model host answers an embedding request, and how it is loaded.

A model loaded for chat with `embedding` on answers embeddings itself, in its own FIFO
between replies. Otherwise the host loads a second worker of the same file just for
embeddings, keyed apart from the chat worker (`embedding_key`), so that both can be loaded,
admitted by memory, kept alive and crash on their own; a chat never reloads because an
embedding request came.
"""

from __future__ import annotations

import dataclasses

from app.engine.settings import CTX_ALIGN, LoadSettings

# The host's key for a model's embedding worker: the file's path and this.
EMBED_SUFFIX = " (embeddings)"
# An embedding worker's context is one batch, in one micro-batch (llama.cpp aborts on a
# pooled batch split in two), and every token of it is an output: llama.cpp computes the
# logits of each (a compute buffer of n_vocab x n_batch floats, reserved at load) and keeps
# them (an output buffer as large, at the first full batch) — 2 x 4 x n_vocab bytes per
# token, 1.2 MB for a 150k-token vocabulary (measured: 3.2 GB for a 100k vocabulary at 4,096
# tokens). So the context is the model's, at most EMBED_MAX_CTX, and at most what keeps
# those two buffers within EMBED_LOGITS_BUDGET (768 tokens for 150k, 8,192 for 16k).
EMBED_MAX_CTX = 8192
EMBED_LOGITS_BUDGET = 1 << 30


def embedding_key(model_id: str) -> str:
    """The host's key for the embedding worker of the model `model_id`."""
    return model_id + EMBED_SUFFIX


def is_embedding_key(key: str) -> bool:
    return key.endswith(EMBED_SUFFIX)


def file_of(key: str) -> str:
    """The model file a host key names (an embedding worker's key or a model's own)."""
    return key[: -len(EMBED_SUFFIX)] if is_embedding_key(key) else key


def chat_worker_embeds(loaded: LoadSettings, asked: LoadSettings | None) -> bool:
    """Whether a chat worker loaded with `loaded` answers an embedding request that asks for
    `asked` (None: whatever the model is loaded with)."""
    if not loaded.embedding:
        return False
    return asked is None or dataclasses.replace(asked, embedding=True).normalized() == loaded


def embedding_ctx(n_ctx: int, n_vocab: int) -> int:
    """The embedding worker's context for a model's n_ctx and vocabulary (see above)."""
    budget = EMBED_LOGITS_BUDGET // (8 * max(1, n_vocab))
    n = min(n_ctx, EMBED_MAX_CTX, budget)
    return max(CTX_ALIGN, n - n % CTX_ALIGN)


def embedding_settings(settings: LoadSettings, n_vocab: int) -> LoadSettings:
    """How an embedding worker loads, from the model's own settings: embeddings on, the
    context (`embedding_ctx`) allocated whole and taken as one batch, so the longest input
    is the context; flash attention auto unless asked on (the score matrix of a
    full-context batch); no speculative decoding."""
    n_ctx = embedding_ctx(settings.normalized().n_ctx, n_vocab)
    return dataclasses.replace(
        settings,
        embedding=True,
        n_ctx=n_ctx,
        ctx_grow=False,
        ctx_start=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        flash_attn=True if settings.flash_attn else None,
        spec="off",
        model_draft="",
    ).normalized()
