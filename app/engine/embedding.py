"""The worker's embedding mode: `Embed` requests on a model loaded with `embedding` on.

Worker-side: worker.py calls it with its llama_cpp module and Llama object (this module
imports no llama_cpp of its own). What llama-cpp-python 0.3.36 does, read in its llama.py
and tried on the generated test models, and what Hearth does about it:

* `Llama(embedding=True)` turns on the context's `embeddings`, sets n_seq_max to
  min(n_batch, llama_max_parallel_sequences()) and a unified KV cache. Such a model still
  generates (the bigram model's greedy text is unchanged), so a chat worker loaded with
  `embedding` on answers both kinds of request.
* `pooling_type` UNSPECIFIED means the model's own. A chat model's GGUF names none, and
  llama.cpp then pools NONE: `embed()` returns one vector per *token*. For such a file
  "auto" asks for LAST (the last token's vector), which is what Ollama answers for a model
  without pooling; an embedding model's own pooling (mean, cls, ...) is kept.
* With mean or cls pooling, a batch that llama.cpp splits into micro-batches aborts the
  process (GGML_ASSERT ggml_can_mul_mat) — also while *generating* a prompt longer than
  n_ubatch. LoadSettings.normalized() therefore makes n_ubatch = n_batch when `embedding`
  is on, and one decode here never holds more than n_batch tokens: that is the longest
  input (`limit`).
* `Llama.embed()` cuts an input to n_batch silently (or raises "Requested tokens ... exceed
  batch size"), takes only strings and never checks for a cancel. The loop below packs
  inputs into batches the same way (one sequence each, every token an output, the KV cache
  cleared before each decode) and reads `llama_get_embeddings_seq`, but also takes token
  ids (OpenAI's token arrays; an id outside the vocabulary would make llama.cpp read out of
  bounds, so they are checked), counts tokens per input, says which input is too long with
  the numbers, stops between batches when cancelled, and normalizes with numpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from app.engine.protocol import Embed, Embeddings

# llama.h's llama_pooling_type (app.engine.llama_args.POOLING_TYPE_IDS holds the rest).
LLAMA_POOLING_TYPE_LAST = 3
LLAMA_POOLING_TYPE_RANK = 4


class EmbedError(Exception):
    """An Embed request that cannot be served as asked; str() is the sentence."""


def pooling_for_file(pooling_type: str, metadata: dict[str, Any], arch: str) -> int | None:
    """The pooling to ask llama.cpp for instead of the setting's, or None to keep it:
    LAST for "auto" on a file that names no pooling of its own (or NONE: one vector per
    token is not an embedding of the input)."""
    if pooling_type != "auto" or metadata.get(f"{arch}.pooling_type") not in (None, 0):
        return None
    return LLAMA_POOLING_TYPE_LAST


def embed_limit(llm) -> int:
    """The most tokens one input may have: one decode's batch (n_ubatch = n_batch here)."""
    return min(llm.n_batch, llm.context_params.n_ubatch, llm.n_ctx())


def tokenize_inputs(llm, cmd: Embed) -> tuple[list[list[int]], int]:
    """Token ids of every input, cut to the limit with `truncate` (else EmbedError with the
    numbers); and how many were cut."""
    limit = embed_limit(llm)
    n_vocab = llm.n_vocab()
    out: list[list[int]] = []
    cut = 0
    for i, item in enumerate(cmd.inputs):
        where = f"Input {i + 1} of {len(cmd.inputs)}" if len(cmd.inputs) > 1 else "The input"
        if isinstance(item, str):
            tokens = llm.tokenize(item.encode("utf-8"), add_bos=True, special=False)
        else:
            tokens = list(item)
            bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
            if bad is not None:
                raise EmbedError(
                    f"{where} has the token id {bad}, outside this model's vocabulary of "
                    f"{n_vocab:,} tokens."
                )
        if not tokens:
            raise EmbedError(f"{where} is empty: there is nothing to embed.")
        if len(tokens) > limit:
            if not cmd.truncate:
                raise EmbedError(
                    f"{where} takes {len(tokens):,} tokens but the embedding context holds "
                    f"{limit:,}: shorten it, or allow truncation."
                )
            tokens = tokens[:limit]
            cut += 1
        out.append(tokens)
    return out, cut


def embed(lc, llm, cmd: Embed, cancelled: Callable[[], bool]) -> Embeddings | None:
    """Embed every input of `cmd` in order; None when cancelled between batches.
    Raises EmbedError (the request's fault) or RuntimeError (llama.cpp's decode failed)."""
    import numpy as np

    started = time.perf_counter()
    if not llm.context_params.embeddings:
        raise EmbedError("This model was not loaded for embeddings.")
    if llm.pooling_type() == LLAMA_POOLING_TYPE_RANK:
        raise EmbedError(
            "This model is a reranker (its pooling is 'rank'): it gives scores, not embeddings."
        )
    token_lists, cut = tokenize_inputs(llm, cmd)
    limit = embed_limit(llm)
    n_seq_max = max(1, llm.context_params.n_seq_max)
    n_embd = llm.n_embd()
    vectors: list[tuple[float, ...]] = []
    try:
        for group in _batches(token_lists, limit, n_seq_max):
            if cancelled():
                return None
            for row in _decode(lc, llm, group, n_embd):
                v = np.asarray(row, dtype=np.float64)
                if cmd.normalize:
                    norm = float(np.linalg.norm(v))
                    v = v / norm if norm > 0 else v
                vectors.append(tuple(v.tolist()))
    finally:
        # The chat's cached prompt (if this worker also chats) is gone with the KV cache.
        llm._ctx.kv_cache_clear()
        llm.reset()
    return Embeddings(
        cmd.request_id,
        tuple(vectors),
        tuple(len(t) for t in token_lists),
        limit,
        time.perf_counter() - started,
        cut,
    )


def _batches(token_lists: Sequence[list[int]], limit: int, n_seq_max: int) -> list[list[list[int]]]:
    """Consecutive inputs packed into decodes of at most `limit` tokens and n_seq_max
    sequences (as Llama.embed packs them)."""
    groups: list[list[list[int]]] = []
    size = 0
    for tokens in token_lists:
        if groups and size + len(tokens) <= limit and len(groups[-1]) < n_seq_max:
            groups[-1].append(tokens)
            size += len(tokens)
        else:
            groups.append([tokens])
            size = len(tokens)
    return groups


def _decode(lc, llm, group: list[list[int]], n_embd: int) -> list[list[float]]:
    batch = llm._batch
    batch.reset()
    for seq, tokens in enumerate(group):
        batch.add_sequence(tokens, seq, True)  # every token an output: embeddings mode needs it
    llm._ctx.kv_cache_clear()
    llm._ctx.decode(batch)
    batch.reset()
    rows = []
    for seq in range(len(group)):
        ptr = lc.llama_get_embeddings_seq(llm._ctx.ctx, seq)
        if not ptr:
            raise RuntimeError("llama.cpp returned no pooled embedding for the sequence")
        rows.append(ptr[:n_embd])
    return rows
