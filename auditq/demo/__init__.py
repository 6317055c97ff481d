"""The self-contained demo: a synthetic probe suite, tiny Llama models trained on it, and
planted unlearning failures, so `auditq demo` can show a real verdict without downloads.

- `auditq.demo.data`      deterministic generator of probes/demo (fictitious people + prose)
- `auditq.demo.tokenizer` byte-level BPE tokenizer trained on the suite text
- `auditq.demo.train`     a 1.1M-parameter Llama and its memorisation training loop
- `auditq.demo.build`     builds base / retrain / fragile / honest models once and caches them
"""
