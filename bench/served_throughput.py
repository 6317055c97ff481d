"""Requests/s and tokens/s of scoring the demo suite's texts over HTTP (llama-cpp-python's server) vs in process.

Usage: python bench/served_throughput.py URL GGUF CHECKPOINT_DIR SUITE_DIR [N_TEXTS]
Start the server first (docs/served.md); the same GGUF is opened in process with the same threads.
"""

from __future__ import annotations

import sys
import time

from transformers import AutoTokenizer

from auditq.backends.http_client import HttpClient, HttpSettings, api_key_from_env
from auditq.backends.llamacpp_lm import LlamaCppLM
from auditq.backends.openai_http import ServedLM
from auditq.backends.served_api import discover
from auditq.probes.text import encode_sequences, special_prefix
from auditq.suite.records import load_suite


def main(url: str, gguf: str, checkpoint: str, suite_dir: str, n: int = 48) -> None:
    tok = AutoTokenizer.from_pretrained(checkpoint)
    suite = load_suite(suite_dir)
    seqs = encode_sequences(tok, [r.text for r in (suite.forget.texts + suite.holdout.texts)[:n]])
    tokens = sum(len(s) for s in seqs)
    for concurrency in (1, 2):
        client = HttpClient(url, HttpSettings(concurrency=concurrency), api_key_from_env())
        lm = ServedLM(client, discover(client, None), prefix=special_prefix(tok), eos_token_id=tok.eos_token_id,
                      n_vocab=len(tok), encode=lambda t: list(tok(t, add_special_tokens=False)["input_ids"]),
                      decode=lambda ids: tok.decode(list(ids), skip_special_tokens=False))
        start = time.perf_counter()
        lm.score(seqs)
        took = time.perf_counter() - start
        print(f"HTTP concurrency {concurrency}: {len(seqs)} texts ({lm.requests} requests incl. tokenize checks), "
              f"{tokens} tokens in {took:.2f} s: {len(seqs) / took:.1f} texts/s, {lm.requests / took:.1f} requests/s, "
              f"{tokens / took:.0f} tokens/s")
    local = LlamaCppLM(gguf, eos_token_id=tok.eos_token_id, n_threads=2)
    start = time.perf_counter()
    local.score(seqs)
    took = time.perf_counter() - start
    print(f"in process: {len(seqs)} texts, {tokens} tokens in {took:.2f} s: {len(seqs) / took:.1f} texts/s, "
          f"{tokens / took:.0f} tokens/s")
    local.close()


if __name__ == "__main__":
    main(*sys.argv[1:5], *(int(a) for a in sys.argv[5:6]))
