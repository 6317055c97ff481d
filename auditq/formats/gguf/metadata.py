"""The GGUF file's key-value metadata: the model's hyperparameters (per architecture) and its vocabulary.

Written in the order convert_to_gguf always wrote them, so a file's bytes do not depend on this split.
"""

from __future__ import annotations

from typing import Any

from auditq.formats.gguf.hparams import ModelInfo, cfg_value
from auditq.formats.gguf.vocab import GGUFVocab


def write_hparams(writer, gguf, info: ModelInfo, config, rope: dict[str, Any], name: str) -> None:
    """General and architecture keys: name, file type (all F32), shape, norms, RoPE."""
    writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_context_length(info.n_ctx_train)
    writer.add_embedding_length(info.n_embd)
    writer.add_block_count(info.n_layer)
    writer.add_feed_forward_length(info.n_ff)
    writer.add_head_count(info.n_head)
    writer.add_vocab_size(info.n_vocab)
    if info.arch == "gpt2":
        writer.add_layer_norm_eps(float(cfg_value(config, "layer_norm_epsilon", default=1e-5)))
        return
    writer.add_head_count_kv(info.n_head_kv)
    writer.add_layer_norm_rms_eps(float(cfg_value(config, "rms_norm_eps", default=1e-6)))
    writer.add_rope_freq_base(rope["theta"])
    writer.add_rope_dimension_count(info.head_dim)
    if info.head_dim * info.n_head != info.n_embd:
        writer.add_key_length(info.head_dim)
        writer.add_value_length(info.head_dim)
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))


def write_vocab(writer, vocab: GGUFVocab) -> None:
    """tokenizer.ggml.* keys: model, pre-tokenizer, tokens, types, merges, special ids, BOS/EOS insertion."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    for kind, tid in vocab.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(tid)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
