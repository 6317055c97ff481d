"""What an OpenAI-compatible server is, and how its log-prob answers are read (torch-free, numpy only).

Two server families return the log-prob of every *prompt* token, which is what the membership probes need
(see /work/shared/FACTS.md, "Architectures, serving and scale-out"):

- llama-cpp-python's server (`python -m llama_cpp.server`): `POST /v1/completions` with `echo: true,
  logprobs: k` returns `choices[0].logprobs.token_logprobs` over the prompt without its BOS. Its echo
  path sets entry 0 to null, and entry 0 is log p(x1 | BOS): the first text token's log-prob is NOT
  returned by this server (llama_cpp/llama.py 0.3.36, `_create_completion`: `token_logprobs[0] = None`).
  So a served llama-cpp-python row scores each text from its second token on; the report says so.
  Prompts are text (its request type is `str | list[str]`), so the served tokenization is checked
  against the suite's ids (`POST /extras/tokenize`) before every request.
- vLLM (`vllm serve`): `prompt_logprobs: k` returns `choices[0].prompt_logprobs`, one entry per prompt
  token, entry 0 null, each a map token id -> {logprob, rank, decoded_token} that always holds the
  prompt's own token. k = -1 (server flag `--max-logprobs -1`) returns the whole vocabulary, which is
  the only case where Min-K%++'s mean and std of log p are computed. Prompts are token ids.

Anything else that answers `GET /v1/models` is a generic OpenAI server: read like llama-cpp-python's
echo shape, tokenized with auditq's own tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from auditq.backends.http_client import EndpointError, HttpClient

LLAMA_CPP_PYTHON, VLLM, GENERIC = "llama-cpp-python", "vllm", "openai-compatible"
#: what the report says for Min-K%++ when the server does not return the full next-token distribution
NO_FULL_DISTRIBUTION = "not available from this endpoint (needs the full next-token distribution)"


@dataclass(frozen=True)
class ServerIdentity:
    """Who answered: the served model id, the server family and version, and what it reports about itself."""

    url: str
    model_id: str
    server: str
    version: str = "unknown"
    #: what the server says about its quantization (None: it does not say)
    quantization: str | None = None
    #: every model id the server listed (a change mid-audit makes the row UNKNOWN)
    listed: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """The row's details: what the report shows about the endpoint (never the API key)."""
        return {"endpoint": self.url, "served_model": self.model_id, "server": self.server,
                "server_version": self.version,
                "reported_quantization": self.quantization or "not reported by the server", **self.extra}


def list_models(client: HttpClient) -> tuple[list[str], list[dict[str, Any]]]:
    """`GET /v1/models` as (ids, entries); EndpointError unless it has the OpenAI shape."""
    answer = client.get_json("/v1/models")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise EndpointError(f"{client.base_url} is not an OpenAI-compatible server "
                            "(GET /v1/models did not return {'data': [{'id': ...}]})")
    return [m["id"] for m in data], data


def discover(client: HttpClient, model: str | None) -> ServerIdentity:
    """Health check and identity: the model must be listed (or be the only one when `model` is None)."""
    try:
        ids, entries = list_models(client)
    except EndpointError as exc:
        if "HTTP 404" in str(exc):
            raise EndpointError(f"{client.base_url} is not an OpenAI-compatible server (GET /v1/models: "
                                "HTTP 404)") from None
        raise
    if not ids:
        raise EndpointError(f"{client.base_url} serves no model (GET /v1/models is empty)")
    if model is None:
        if len(ids) > 1:
            raise EndpointError(f"{client.base_url} serves {len(ids)} models ({', '.join(ids[:5])}): "
                                "name one with --served-model")
        model = ids[0]
    elif model not in ids:
        raise EndpointError(f"{client.base_url} does not serve model {model!r} (it serves: {', '.join(ids[:5])})")
    entry = entries[ids.index(model)]
    server, version = _server_family(client)
    extra = {k: entry[k] for k in ("root", "max_model_len", "owned_by") if isinstance(entry.get(k), (str, int))}
    quant = entry.get("quantization") if isinstance(entry.get("quantization"), str) else None
    return ServerIdentity(url=client.base_url, model_id=model, server=server, version=version,
                          quantization=quant, listed=tuple(ids), extra=extra)


def _server_family(client: HttpClient) -> tuple[str, str]:
    """(family, version) from vLLM's `/version` or the FastAPI title of llama-cpp-python's `/openapi.json`."""
    try:
        answer = client.get_json("/version")
        if isinstance(answer, dict) and isinstance(answer.get("version"), str):
            return VLLM, answer["version"]
    except EndpointError:
        pass
    try:
        info = client.get_json("/openapi.json").get("info", {})
        if "llama.cpp python" in str(info.get("title", "")).lower():
            return LLAMA_CPP_PYTHON, str(info.get("version", "unknown"))
    except (EndpointError, AttributeError):
        pass
    return GENERIC, "unknown"


def _choice(response: Any, where: str) -> dict[str, Any]:
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise EndpointError(f"{where}: the completion has no single choice")
    return choices[0]


def echo_logprobs(response: Any, n_tokens: int, where: str) -> np.ndarray:
    """llama-cpp-python / OpenAI echo shape -> log p of prompt tokens 2..n-1 (n_tokens includes BOS).

    Entry 0 (log p(x1 | BOS)) is null in this shape; entries 1..n-2 are the rest of the prompt. The answer
    must have at least n-1 entries and report `n_tokens` prompt tokens, else it is not this prompt.
    """
    usage = response.get("usage") if isinstance(response, dict) else None
    if isinstance(usage, dict) and usage.get("prompt_tokens") not in (None, n_tokens):
        raise EndpointError(f"{where}: the server counted {usage.get('prompt_tokens')} prompt tokens, "
                            f"auditq sent {n_tokens}")
    logprobs = _choice(response, where).get("logprobs")
    values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    want = n_tokens - 1
    if not isinstance(values, list) or len(values) < want:
        got = len(values) if isinstance(values, list) else "no"
        raise EndpointError(f"{where}: {got} prompt log-probs for {want} prompt tokens")
    body = values[1:want]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in body):
        raise EndpointError(f"{where}: a prompt log-prob is missing or not a number")
    return np.asarray(body, dtype=np.float64)


def vllm_prompt_logprobs(response: Any, ids: Sequence[int], where: str,
                         n_vocab: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vLLM's `prompt_logprobs` -> (log p of ids[1:], mean log p, std log p); mean/std are NaN unless every
    position carries the whole vocabulary (`n_vocab` entries; --max-logprobs -1 and prompt_logprobs -1)."""
    entries = _choice(response, where).get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) != len(ids):
        got = len(entries) if isinstance(entries, list) else "no"
        raise EndpointError(f"{where}: {got} prompt_logprobs entries for {len(ids)} prompt tokens")
    n = len(ids) - 1
    logp, mean, std = np.empty(n), np.full(n, np.nan), np.full(n, np.nan)
    for t in range(n):
        entry = entries[t + 1]
        own = entry.get(str(int(ids[t + 1]))) if isinstance(entry, dict) else None
        value = own.get("logprob") if isinstance(own, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise EndpointError(f"{where}: position {t + 1} lacks the log-prob of its own token {ids[t + 1]}")
        logp[t] = float(value)
        if n_vocab and len(entry) >= n_vocab:
            lps = np.array([float(v["logprob"]) for v in entry.values()], dtype=np.float64)
            probs = np.exp(lps)
            mean[t] = float((probs * lps).sum())
            std[t] = float(np.sqrt(max(0.0, (probs * lps * lps).sum() - mean[t] ** 2)))
    return logp, mean, std


def completion_text(response: Any, where: str) -> str:
    """The generated text of a one-choice completion."""
    text = _choice(response, where).get("text")
    if not isinstance(text, str):
        raise EndpointError(f"{where}: the completion has no text")
    return text


def vllm_completion_ids(response: Any, where: str) -> list[int] | None:
    """Generated token ids from vLLM's `return_tokens_as_token_ids` logprobs ("token_id:123"); None if absent."""
    logprobs = _choice(response, where).get("logprobs")
    tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list):
        return None
    try:
        return [int(str(t).split("token_id:", 1)[1]) for t in tokens]
    except (IndexError, ValueError):
        return None


def check_model(response: Any, identity: ServerIdentity, where: str) -> None:
    """A completion answered by another model than the audited one is not this row's measurement."""
    model = response.get("model") if isinstance(response, dict) else None
    if isinstance(model, str) and model != identity.model_id:
        raise EndpointError(f"{where}: answered by model {model!r}, not {identity.model_id!r} "
                            "(the server changed mid-audit)")
