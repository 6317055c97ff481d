"""Tiny real Hugging Face checkpoints for the GGUF tests (built in seconds, saved as safetensors).

- `build_llama_checkpoint`: LlamaForCausalLM with grouped-query attention (4 query heads,
  2 key/value heads), a byte-level BPE tokenizer trained here, BOS prepended.
- `build_qwen2_checkpoint`: Qwen2ForCausalLM (q/k/v biases, tied embeddings) with the Qwen2
  split regex in front of ByteLevel and no BOS, the way Qwen2 tokenizers behave.

Weights are random but initialised with a wide std so that next-token distributions are
peaked and greedy continuations are not trivial: parity is then a real test.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ("<s>", "</s>", "<pad>")
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "Marie Curie was born in Warsaw in 1867 and won two Nobel prizes.",
    "Alan Turing worked at Bletchley Park during the war; he broke codes.",
    "Question: Where was Ada Lovelace born?\nAnswer: London, in 1815.",
    "It's a truth universally acknowledged that we'll need 3 tests, won't we?",
    "Numbers like 12345 and 3.14159 are split into digits; emails like a.b@c.org too.",
    "   Leading spaces, trailing spaces   and\ttabs\tand\n\nblank lines.",
    "Unicode: café, naïve, Zürich, Ελληνικά, 東京, emoji 🙂 and — dashes.",
)

PARITY_TEXTS = CORPUS + (
    "A sentence that was not in the training corpus at all, with rare words: xylophone quixotic.",
    "  two leading spaces and 2024-11-05 dates",
    "ünïcödé ñ and CJK 中文字符 mixed with ASCII",
)

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(vocab_size: int, bos: bool, qwen2_split: bool = False):
    """A byte-level BPE tokenizer trained on CORPUS, wrapped as PreTrainedTokenizerFast.

    The Qwen2 variant uses Qwen2's special tokens: transformers 5 loads a qwen2 checkpoint's
    tokenizer as Qwen2Tokenizer, which adds <|endoftext|> when the vocabulary lacks it.
    """
    specials = QWEN2_SPECIALS if qwen2_split else SPECIALS
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if qwen2_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if qwen2_split:
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                       additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _widen_init(model: torch.nn.Module, std: float, seed: int, head_std: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(seed)
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param is head:
                param.copy_(torch.randn(param.shape, generator=gen) * head_std)
            elif param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
            else:  # norm weights: not all ones, so a missed norm shows up
                param.copy_(1.0 + torch.randn(param.shape, generator=gen) * 0.1)


def build_llama_checkpoint(out: Path, hidden: int = 128, intermediate: int = 384, layers: int = 2,
                           heads: int = 4, kv_heads: int = 2, vocab: int = 400, seed: int = 0,
                           rope_parameters: dict | None = None, tied: bool = False, mistral: bool = False) -> Path:
    """Llama (or, with mistral=True, MistralForCausalLM: same GGUF architecture)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(vocab, bos=True)
    config_cls, model_cls = (MistralConfig, MistralForCausalLM) if mistral else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **({"rope_parameters": rope_parameters} if rope_parameters else {}),
        **({"sliding_window": None} if mistral else {}),
    )
    model = model_cls(config)
    _widen_init(model, std=0.08, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_qwen2_checkpoint(out: Path, hidden: int = 256, intermediate: int = 512, layers: int = 2,
                           heads: int = 4, kv_heads: int = 2, vocab: int = 400, seed: int = 1) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(vocab, bos=False, qwen2_split=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    _widen_init(model, std=0.06, seed=seed, head_std=0.12)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_gpt2_checkpoint(out: Path, hidden: int = 128, layers: int = 2, heads: int = 4,
                          vocab: int = 400, seed: int = 2) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(vocab, bos=False)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=hidden, n_layer=layers, n_head=heads,
                        n_positions=512, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    _widen_init(model, std=0.08, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def load(path: Path, role: str = "unlearned"):
    from auditq.checkpoint.load import load_checkpoint

    return load_checkpoint(path, role)
