"""How fast gguf_info reads a model's metadata, next to gguf.GGUFReader.

    .venv/bin/python bench/gguf_info_speed.py [--runs 30] [--reader-runs 3]

Two files, made once in bench/.cache (git-ignored):

* bpe150k: a real generated model (testmodels.write_model) with a 150,000-token BPE
  vocabulary and ~150,000 merges, the shape of a Qwen/Llama-3 tokenizer;
* 7b-sparse: the metadata and tensor table of a 7B llama (291 Q4_0 tensors, the same
  150k vocabulary) in front of 3.6 GB of tensor data that is a hole in a sparse file:
  it costs no disk, and proves the reader never touches tensor data.

The issue's target: read_info under 50 ms on the 150k-vocabulary file. The page cache is
warm (one read first); each figure is the median, min and max of --runs calls.
Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine import gguf_info, testmodels

CACHE = Path(__file__).resolve().parent / ".cache"
VOCAB = 150_000
TARGET_MS = 50.0


def bpe150k() -> Path:
    path = CACHE / "gguf-info-bpe150k.gguf"
    if not path.exists():
        tmp = path.with_suffix(".tmp.gguf")
        testmodels.write_model(tmp, tokenizer="bpe", vocab_size=VOCAB, bigram=False,
                               weights="q4_0", n_embd=64, n_head=1, n_head_kv=1, n_ff=64,
                               n_layers=1)  # fmt: skip
        tmp.rename(path)
    return path


def sparse_7b() -> Path:
    """A 7B llama's metadata and tensor table; its tensor data a hole in a sparse file."""
    import gguf
    import numpy as np

    path = CACHE / "gguf-info-7b-sparse.gguf"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.gguf")
    n_embd, n_ff, n_layers = 4096, 11008, 32
    q4 = gguf.GGMLQuantizationType.Q4_0
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("7B-shaped sparse file")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(32)
    w.add_head_count_kv(32)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    tokens = [f"t{i}" for i in range(VOCAB)]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([f"t{i} t{i + 1}" for i in range(VOCAB - 1)])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def add(name: str, *shape: int, quantized: bool = True) -> None:
        """shape in numpy order (rows, columns); a quantized one is given in bytes."""
        if quantized:
            rows, cols = shape
            w.add_tensor_info(name, (rows, cols // 32 * 18), np.dtype(np.uint8),
                              rows * cols // 32 * 18, raw_dtype=q4)  # fmt: skip
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)

    add("token_embd.weight", VOCAB, n_embd)
    add("output_norm.weight", n_embd, quantized=False)
    add("output.weight", VOCAB, n_embd)
    for i in range(n_layers):
        for name, shape in [("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)),
                            ("attn_v", (n_embd, n_embd)), ("attn_output", (n_embd, n_embd)),
                            ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)),
                            ("ffn_down", (n_embd, n_ff))]:  # fmt: skip
            add(f"blk.{i}.{name}.weight", *shape)
        add(f"blk.{i}.attn_norm.weight", n_embd, quantized=False)
        add(f"blk.{i}.ffn_norm.weight", n_embd, quantized=False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    # Extend to the size the tensor table needs: a hole, no disk blocks.
    info = gguf_info.read_info(tmp)
    os.truncate(tmp, info.files[0].needed)
    tmp.rename(path)
    return path


def timed(fn, runs: int) -> list[float]:
    fn()  # warm the page cache and the imports
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reader-runs", type=int, default=3)
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)

    import gguf

    files = {"bpe150k": bpe150k(), "7b-sparse": sparse_7b()}
    rows = []
    for name, path in files.items():
        info = gguf_info.read_info(path)
        size = f"{gguf_info.human_bytes(info.file_size)}"
        on_disk = gguf_info.human_bytes(os.stat(path).st_blocks * 512)
        desc = f"{name} ({size}, {on_disk} on disk, vocab {info.vocab_size:,})"
        rows.append((desc, "gguf_info.read_info", timed(lambda p=path: gguf_info.read_info(p),
                                                         args.runs)))  # fmt: skip
        rows.append((desc, "gguf_info.inspect", timed(lambda p=path: gguf_info.inspect(p),
                                                       max(5, args.runs // 3))))  # fmt: skip
        if name == "bpe150k" and args.reader_runs:
            rows.append((desc, "gguf.GGUFReader", timed(lambda p=path: gguf.GGUFReader(p),
                                                         args.reader_runs)))  # fmt: skip

    print("$ " + " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]))
    print()
    print("| file | reader | runs | median ms | min ms | max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for desc, reader, times in rows:
        print(f"| {desc} | {reader} | {len(times)} | {statistics.median(times):.1f} | "
              f"{min(times):.1f} | {max(times):.1f} |")  # fmt: skip
    median = statistics.median(rows[0][2])
    reader = next((r for r in rows if r[1] == "gguf.GGUFReader"), None)
    print()
    if reader:
        print(f"read_info is {statistics.median(reader[2]) / median:,.0f}x faster than "
              "GGUFReader on the 150k-vocabulary file.")  # fmt: skip
    ok = median < TARGET_MS
    print(f"Target: read_info < {TARGET_MS:.0f} ms on the 150k-vocabulary file: "
          f"{'met' if ok else 'MISSED'} (median {median:.1f} ms).")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
