"""LanguageModel over a GGUF file run by llama.cpp (llama-cpp-python), the way it is deployed.

Scoring evaluates each sequence from an empty KV cache in one batch (n_batch = n_ubatch =
n_ctx) with logits for every position, then takes a float64 log-softmax of llama.cpp's
logits. The KV cache is F32 (type_k/type_v = GGML_TYPE_F32) so that an F32 GGUF matches the
torch model to ~1e-4 in log-prob; llama.cpp's default F16 cache alone costs ~1e-3. Weights,
and the 8-bit activation quantization llama.cpp applies in quantized matmuls, are exactly as
deployed. Generation is greedy (argmax of the logits), stops at EOS, and returns new ids only.

llama_cpp is imported lazily; a missing package raises BackendUnavailable.
"""

from __future__ import annotations

import ctypes
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from auditq.backends.base import LanguageModel, TokenScores
from auditq.errors import BackendUnavailable, MeasurementError

INSTALL_HINT = "pip install 'auditq[gguf]'"


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise BackendUnavailable("scoring GGUF files needs llama-cpp-python", install_hint=INSTALL_HINT) from None
    except OSError as exc:
        raise BackendUnavailable(f"llama-cpp-python is installed but its library does not load: {exc}",
                                 install_hint=INSTALL_HINT) from None
    _install_log_callback(llama_cpp)
    return llama_cpp


# llama-cpp-python 0.3.36 maps ggml's log levels with a stale table (WARN shows as ERROR), so
# verbose=False still prints warnings. auditq routes llama.cpp's log through its own callback:
# everything goes to the "auditq.llamacpp" logger at DEBUG, errors at INFO (our exceptions carry
# them; nothing reaches stderr unless logging is configured), and into any
# active capture_llama_log() list (used to explain failures and quantizer fallbacks).
GGML_LOG_WARN, GGML_LOG_ERROR = 3, 4
_PY_LOG = logging.getLogger("auditq.llamacpp")
_SINKS: list[list[tuple[int, str]]] = []
_CALLBACK = None


def _install_log_callback(llama_cpp) -> None:
    global _CALLBACK
    if _CALLBACK is not None:
        return

    @llama_cpp.llama_log_callback
    def _callback(level, text, user_data):  # noqa: ARG001 - ctypes signature
        try:
            message = text.decode("utf-8", "replace")
            for sink in _SINKS:
                sink.append((int(level), message))
            _PY_LOG.log(logging.INFO if level == GGML_LOG_ERROR else logging.DEBUG, "%s", message.rstrip())
        except Exception:  # noqa: BLE001 - never raise through C
            pass

    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    _CALLBACK = _callback  # keep a reference: llama.cpp holds a raw pointer


@contextmanager
def capture_llama_log() -> Iterator[list[tuple[int, str]]]:
    """Collect llama.cpp's log lines (level, text) emitted inside the block."""
    _import_llama_cpp()
    sink: list[tuple[int, str]] = []
    _SINKS.append(sink)
    try:
        yield sink
    finally:
        _SINKS.remove(sink)


def last_problem(lines: list[tuple[int, str]]) -> str:
    """The last error (else warning) line of a captured log, for one-line error messages."""
    for wanted in (GGML_LOG_ERROR, GGML_LOG_WARN):
        for level, text in reversed(lines):
            if level == wanted and text.strip():
                return text.strip()
    return ""


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


class LlamaCppLM(LanguageModel):
    """Score and greedily generate with llama.cpp over token ids.

    `eos_token_id` is the id generation stops at (the checkpoint's HF EOS, so torch and
    llama.cpp rows stop at the same token); None means llama.cpp's own EOS from the file.
    The context grows on demand (powers of two from `n_ctx`) up to the model's training
    context; longer sequences raise MeasurementError.
    """

    def __init__(self, model_path: Path | str, eos_token_id: int | None = None, n_ctx: int = 512,
                 seed: int = 0, n_threads: int | None = None, f32_kv_cache: bool = True,
                 description: str = "llama.cpp", n_gpu_layers: int = 0) -> None:
        self._llama_cpp = _import_llama_cpp()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise MeasurementError(f"GGUF file {self.model_path} does not exist")
        self.seed = int(seed)
        self.n_threads = n_threads
        self.f32_kv_cache = f32_kv_cache
        self.description = description
        self.n_gpu_layers = int(n_gpu_layers)  # -1: every layer on the GPU (auditq.formats.engine_devices)
        self.llama = None
        self._open(max(8, int(n_ctx)))
        self.n_ctx_train = int(self.llama._model.n_ctx_train())
        if self.n_ctx > self.n_ctx_train > 0:
            self._open(self.n_ctx_train)
        self.n_vocab = int(self.llama.n_vocab())
        self.eos_token_id = int(self.llama.token_eos()) if eos_token_id is None else int(eos_token_id)

    # ------------------------------------------------------------------ setup

    def _open(self, n_ctx: int) -> None:
        lc = self._llama_cpp
        if self.llama is not None:
            self.llama.close()
            self.llama = None
        kv = {"type_k": lc.GGML_TYPE_F32, "type_v": lc.GGML_TYPE_F32} if self.f32_kv_cache else {}
        with capture_llama_log() as log:
            try:
                self.llama = lc.Llama(
                    model_path=str(self.model_path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                    logits_all=True, seed=self.seed, n_threads=self.n_threads, n_threads_batch=self.n_threads,
                    n_gpu_layers=self.n_gpu_layers, verbose=False, **kv,
                )
            except (ValueError, RuntimeError) as exc:
                why = last_problem(log)
                raise MeasurementError(f"llama.cpp cannot load {self.model_path.name}: {exc}"
                                       + (f" ({why})" if why else "")) from None
        self.n_ctx = n_ctx

    def _ensure_ctx(self, needed: int) -> None:
        if needed <= self.n_ctx:
            return
        if needed > self.n_ctx_train:
            raise MeasurementError(
                f"sequence of {needed} tokens exceeds the model's context of {self.n_ctx_train} tokens")
        self._open(min(_next_pow2(needed), self.n_ctx_train))

    def _check_ids(self, ids: Sequence[int]) -> None:
        bad = [i for i in ids if not 0 <= int(i) < self.n_vocab]
        if bad:
            raise MeasurementError(f"token id {bad[0]} is outside the GGUF vocabulary of {self.n_vocab}")

    def _logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of `ids`, evaluated from an empty cache."""
        self._check_ids(ids)
        self._ensure_ctx(len(ids))
        self.llama.reset()
        self.llama.eval(list(int(i) for i in ids))
        return np.array(self.llama.scores[: len(ids)], dtype=np.float64)

    # ------------------------------------------------------------------ LanguageModel

    def score(self, sequences: list[list[int]]) -> list[TokenScores]:
        out: list[TokenScores] = []
        for seq in sequences:
            if len(seq) < 2:
                empty = np.zeros(0, dtype=np.float64)
                out.append(TokenScores(empty, empty.copy(), empty.copy()))
                continue
            logits = self._logits(seq)[:-1]
            shifted = logits - logits.max(axis=-1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            probs = np.exp(logp)
            mean = (probs * logp).sum(-1)
            var = (probs * logp * logp).sum(-1) - mean * mean
            target = np.asarray(seq[1:], dtype=np.int64)
            out.append(TokenScores(
                logprobs=logp[np.arange(len(target)), target],
                mean_logp=mean,
                std_logp=np.sqrt(np.clip(var, 0.0, None)),
            ))
        return out

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop_token_ids: Iterable[int] = ()) -> list[list[int]]:
        stops = frozenset(int(t) for t in stop_token_ids)
        results: list[list[int]] = []
        for prompt in prompts:
            if not prompt:
                raise MeasurementError("cannot generate from an empty prompt")
            self._check_ids(prompt)
            self._ensure_ctx(len(prompt) + max_new_tokens)
            llama = self.llama
            llama.reset()
            llama.eval(list(int(i) for i in prompt))
            new: list[int] = []
            for _ in range(max_new_tokens):
                nxt = int(np.argmax(llama.scores[llama.n_tokens - 1]))
                if nxt == self.eos_token_id:
                    break
                new.append(nxt)
                if len(new) == max_new_tokens or nxt in stops:
                    break
                llama.eval([nxt])
            results.append(new)
        return results

    # ------------------------------------------------------------------ tokenizer

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """llama.cpp's own tokenization (BOS/EOS as the file's metadata says, specials parsed like HF)."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def close(self) -> None:
        if self.llama is not None:
            self.llama.close()
            self.llama = None


def check_tokenizer_parity(llama, hf_tokenizer, texts: Iterable[str]) -> int:
    """Raise MeasurementError unless llama.cpp tokenizes every text exactly like the HF tokenizer.

    `llama` is a LlamaCppLM or a llama_cpp.Llama. Both sides add special tokens the way
    their metadata says (HF: add_special_tokens=True; llama.cpp: add_bos/add_eos from the
    GGUF). Returns the number of texts checked.
    """
    n = 0
    for text in texts:
        expected = list(hf_tokenizer(text, add_special_tokens=True)["input_ids"])
        if isinstance(llama, LlamaCppLM):
            got = llama.tokenize(text)
        else:
            got = list(llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise MeasurementError(
                f"llama.cpp tokenizes text {shown!r} differently from the Hugging Face tokenizer "
                f"(first difference at token {at}: HF {expected[at:at + 3]} vs llama.cpp {got[at:at + 3]}; "
                f"{len(expected)} vs {len(got)} tokens)")
        n += 1
    return n
