"""Worker-side: a reply ends at exactly max_tokens sampled tokens, even inside a character.

llama-cpp-python 0.3.36's `_create_completion` holds back a token that leaves a multi-byte
UTF-8 character incomplete with `continue`, which also skips its `max_tokens` check: when
the limit lands between the bytes of "é", it asks `generate` for more tokens (one more
decode each) until the character is complete, and the reply is one to three tokens over
the limit. `TokenLimit` stands in for the instance's `generate` (the plain one or the
speculative loop's) and ends it after the limit: the completion loop then finishes with
"length" and streams the held-back tail decoded with errors="ignore", so the reply shows
the complete characters only. This module never imports llama_cpp.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class TokenLimit:
    """Wraps a Llama instance's `generate` so that it yields at most the request's
    max_tokens (the limit `create_completion` computes: <= 0 or past the context means the
    rest of the context). Set `max_tokens` before each `create_completion`."""

    def __init__(self, llm: Any):
        self._llm = llm
        self._generate = llm.generate  # the instance's: the speculative loop, if attached
        self.max_tokens = 0
        llm.generate = self

    def limit(self, n_prompt: int) -> int:
        """create_completion's own cap for a prompt of n_prompt tokens."""
        n_ctx = self._llm._n_ctx  # a growing context sets it to its maximum
        if self.max_tokens <= 0 or self.max_tokens + n_prompt >= n_ctx:
            return n_ctx - n_prompt
        return self.max_tokens

    def __call__(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        limit = self.limit(len(tokens))
        inner = self._generate(tokens, *args, **kwargs)
        try:
            for n, token in enumerate(inner, start=1):
                yield token
                if n >= limit:
                    return  # never resume `inner`: that would decode the last token
        finally:
            inner.close()
