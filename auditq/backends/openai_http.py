"""LanguageModel over an OpenAI-compatible HTTP server: the same probes, measured on the model as served.

Scoring asks for the prompt's own log-probs (auditq.backends.served_api has both servers' shapes);
generation is greedy (`temperature: 0`, llama-cpp-python's default repeat penalty switched off) and
returns token ids. Every answer is checked before it is used: the number of log-probs, the served
tokenization of the text against the ids the probe asked for, and the model that answered. A mismatch
raises EndpointError, so the row becomes UNKNOWN with that reason; it is never scored from a partial
answer. After each batch the server must still list the same model.

Features the server cannot give are NaN and listed in `unavailable` (Min-K%++ needs the full next-token
distribution: only vLLM started with `--max-logprobs -1` returns it); nothing is approximated from top-k.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from auditq.backends.base import LanguageModel, TokenScores
from auditq.backends.http_client import EndpointError, HttpClient
from auditq.backends.served_api import (
    GENERIC, LLAMA_CPP_PYTHON, NO_FULL_DISTRIBUTION, VLLM, ServerIdentity, check_model, completion_text,
    echo_logprobs, list_models, vllm_completion_ids, vllm_prompt_logprobs,
)

#: what the report says about the first text token on servers that do not return its log-prob
FIRST_TOKEN_NOTE = ("llama-cpp-python's server does not return the first text token's log-prob (its echo "
                    "path nulls log p(x1 | BOS)): LOSS, zlib and Min-K% of this row are over tokens 2..n")


class ServedLM(LanguageModel):
    """Score and greedily generate through one served model.

    `prefix` is the special-token prefix auditq's tokenizer puts before every text (normally [BOS]);
    `encode`/`decode` are auditq's tokenizer, used where the server has no tokenizer endpoint.
    """

    def __init__(self, client: HttpClient, identity: ServerIdentity, *, prefix: Sequence[int],
                 eos_token_id: int | None, n_vocab: int | None,
                 encode: Callable[[str], list[int]], decode: Callable[[Sequence[int]], str]) -> None:
        self.client, self.identity = client, identity
        self.prefix = [int(t) for t in prefix]
        self.eos_token_id = eos_token_id
        self.n_vocab = n_vocab
        self._encode, self._decode = encode, decode
        self.description = f"served {identity.model_id} ({identity.server} at {identity.url})"
        self.full_distribution = identity.server == VLLM and self._vllm_full_distribution()
        self.unavailable: dict[str, str] = {} if self.full_distribution else {"minkpp": NO_FULL_DISTRIBUTION}
        self.notes: list[str] = []
        if identity.server != VLLM:
            if not self.prefix:
                raise EndpointError(f"{identity.server} servers misalign echoed prompt log-probs for a tokenizer "
                                    "without a BOS token; audit this model with vLLM or in process")
            self.notes.append(FIRST_TOKEN_NOTE)
        self.requests = 0
        self._pieces: dict[str, int] | None = None

    # ------------------------------------------------------------------ tokenization

    def server_tokenize(self, text: str) -> list[int]:
        """The server's ids for `text`, with the special prefix the server adds (auditq's when it has no endpoint)."""
        if self.identity.server == LLAMA_CPP_PYTHON:
            answer = self._post("/extras/tokenize", {"input": text, "model": self.identity.model_id})
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
        elif self.identity.server == VLLM:
            answer = self._post("/tokenize", {"prompt": text, "model": self.identity.model_id,
                                              "add_special_tokens": True})
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
        else:
            return self.prefix + list(self._encode(text))
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise EndpointError(f"{self.identity.url}: the tokenizer endpoint returned no token ids")
        return tokens

    def _as_text(self, ids: Sequence[int], what: str) -> str:
        """The text the server must turn back into exactly `ids` (refused when it does not)."""
        ids = [int(t) for t in ids]
        if ids[: len(self.prefix)] != self.prefix:
            raise EndpointError(f"a {what} does not start with the tokenizer's special prefix {self.prefix}")
        text = self._decode(ids[len(self.prefix):])
        served = self.server_tokenize(text)
        if served != ids:
            at = next((i for i, (a, b) in enumerate(zip(ids, served)) if a != b), min(len(ids), len(served)))
            raise EndpointError(f"the server tokenizes a {what} differently from auditq's tokenizer (first "
                                f"difference at token {at} of {len(ids)}: {ids[at:at + 3]} vs {served[at:at + 3]})")
        return text

    # ------------------------------------------------------------------ LanguageModel

    def score(self, sequences: list[list[int]]) -> list[TokenScores]:
        out = self.client.map(self._score_one, sequences)
        self.check_identity()
        return out

    def _score_one(self, seq: list[int]) -> TokenScores:
        where = f"POST {self.identity.url}/v1/completions"
        empty = np.zeros(0, dtype=np.float64)
        if self.identity.server == VLLM:
            if len(seq) < 2:
                return TokenScores(empty, empty.copy(), empty.copy())
            k = -1 if self.full_distribution else 1
            answer = self._completion({"prompt": [int(t) for t in seq], "max_tokens": 1, "prompt_logprobs": k})
            logp, mean, std = vllm_prompt_logprobs(answer, seq, where, self.n_vocab if self.full_distribution else None)
            return TokenScores(logp, mean, std)
        if len(seq) < 3:
            return TokenScores(empty, empty.copy(), empty.copy())
        text = self._as_text(seq, "scored text")
        answer = self._completion({"prompt": text, "echo": True, "max_tokens": 1, "logprobs": 1})
        logp = echo_logprobs(answer, len(seq), where)
        nan = np.full(logp.shape, np.nan)
        return TokenScores(logp, nan, nan.copy())

    def score_logprobs(self, sequences: list[list[int]]) -> list[TokenScores]:
        return self.score(sequences)

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop_token_ids: Iterable[int] = ()) -> list[list[int]]:
        stops = frozenset(int(t) for t in stop_token_ids)
        out = self.client.map(lambda p: self._generate_one(p, max_new_tokens, stops), prompts)
        self.check_identity()
        return out

    def _generate_one(self, prompt: list[int], max_new_tokens: int, stops: frozenset[int]) -> list[int]:
        where = f"POST {self.identity.url}/v1/completions"
        if not prompt:
            raise EndpointError("cannot generate from an empty prompt")
        if self.identity.server == VLLM:
            answer = self._completion({"prompt": [int(t) for t in prompt], "max_tokens": max_new_tokens,
                                       "logprobs": 1, "return_tokens_as_token_ids": True})
            new = vllm_completion_ids(answer, where)
            if new is None:
                raise EndpointError(f"{where}: the completion carries no token ids")
        else:
            text = self._as_text(prompt, "prompt")
            answer = self._completion({"prompt": text, "max_tokens": max_new_tokens, "logprobs": 1})
            new = self._piece_ids(answer, where)
            if new is None:  # a piece that is no single token: re-tokenize prompt + completion instead
                full = self.server_tokenize(text + completion_text(answer, where))
                if full[: len(prompt)] != [int(t) for t in prompt]:
                    raise EndpointError(f"{where}: the prompt's tokens change when the completion is appended")
                new = full[len(prompt):]
        return _cut(new, max_new_tokens, self.eos_token_id, stops)

    def _piece_ids(self, answer: dict, where: str) -> list[int] | None:
        """The generated ids from the answer's per-token pieces (`logprobs.tokens`), when each piece is the
        text of exactly one vocabulary entry; None otherwise. Re-tokenizing the completion text instead
        can merge pieces into other tokens (measured on the demo model: 259+85 -> 544)."""
        logprobs = answer["choices"][0].get("logprobs")
        pieces = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        if not isinstance(pieces, list) or "".join(map(str, pieces)) != completion_text(answer, where):
            return None
        if self._pieces is None:
            by_text: dict[str, list[int]] = {}
            for token in range(int(self.n_vocab or 0)):
                by_text.setdefault(self._decode([token]), []).append(token)
            self._pieces = {text: ids[0] for text, ids in by_text.items() if len(ids) == 1 and text}
        ids = [self._pieces.get(str(piece)) for piece in pieces]
        return None if any(i is None for i in ids) else [int(i) for i in ids]

    # ------------------------------------------------------------------ requests

    def _completion(self, body: dict) -> dict:
        """POST /v1/completions, greedy, for the audited model; the answer must name that model."""
        body = {"model": self.identity.model_id, "temperature": 0, **body}
        if self.identity.server == LLAMA_CPP_PYTHON:  # its defaults penalise repeats even when greedy
            body.update(repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0)
        elif self.identity.server == GENERIC:
            body.update(frequency_penalty=0.0, presence_penalty=0.0)
        answer = self._post("/v1/completions", body)
        check_model(answer, self.identity, f"POST {self.identity.url}/v1/completions")
        return answer

    def _post(self, path: str, body: dict) -> dict:
        self.requests += 1
        answer = self.client.post_json(path, body)
        if not isinstance(answer, dict):
            raise EndpointError(f"POST {self.identity.url}{path}: the answer is not a JSON object")
        return answer

    def _vllm_full_distribution(self) -> bool:
        """Whether this vLLM returns the whole vocabulary per prompt position (server flag --max-logprobs -1)."""
        try:
            self._post("/v1/completions", {"model": self.identity.model_id, "prompt": self.prefix + [0] if self.prefix
                                           else [0, 0], "max_tokens": 1, "prompt_logprobs": -1, "temperature": 0})
        except EndpointError as exc:
            if "HTTP 400" in str(exc):
                return False
            raise
        return True

    def check_identity(self) -> None:
        """The server must still list the audited model (a swapped model makes the row UNKNOWN)."""
        ids, _ = list_models(self.client)
        if self.identity.model_id not in ids:
            raise EndpointError(f"{self.identity.url} no longer serves {self.identity.model_id!r} (now: "
                                f"{', '.join(ids[:3]) or 'nothing'}): the server changed mid-audit")


def _cut(new: list[int], max_new_tokens: int, eos: int | None, stops: frozenset[int]) -> list[int]:
    """Greedy ids as LanguageModel.generate returns them: EOS dropped, cut right after a stop token."""
    out: list[int] = []
    for token in new[:max_new_tokens]:
        if eos is not None and token == eos:
            break
        out.append(token)
        if token in stops:
            break
    return out
