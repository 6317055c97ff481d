"""A row for a model as served: an OpenAI-compatible endpoint stands in for a role's checkpoint (--served URL).

Why a format: a served model is the checkpoint in its deployed form (quantized by whoever runs the
server), so it is one more row beside fp, rtn4 or a GGUF artifact, judged by the same checks. The probes
run unchanged over HTTP (auditq.backends.openai_http.ServedLM). The row's details carry the server's
identity (served model id, server family and version, reported quantization) and what the endpoint
cannot give (Min-K%++ without the full distribution).

A role without an endpoint (usually BASE) is measured in process in `stand_in` (--served-as, default
fp; say gguf:q8_0 when the server runs a Q8_0 GGUF), so retention is read at the served precision.
The checkpoint directory of a served role is still needed: its tokenizer is the suite's, and the
served tokenization is checked against it before any scoring.

Served rows are never in the result cache (like --artifact files): auditq cannot fingerprint a
server's weights, and a model id is a name, not a hash.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from auditq.backends.http_client import EndpointError, HttpClient, HttpSettings, api_key_from_env
from auditq.errors import InputError, MeasurementError
from auditq.formats.base import Format, FormatContext
from auditq.formats.spec import FormatSpec


def display_url(url: str) -> str:
    """`url` as reports show it: scheme, host, port and path only (never user info or a query)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


class ServedFormat(Format):
    """``served:<model or host>``: the role's model measured through its endpoint."""

    engine = "http"
    has_codes = False
    needs_resident = False  # the server holds the model; a stand-in role loads its checkpoint itself

    def __init__(self, role_urls: Mapping[str, str], *, models: Mapping[str, str | None] | None = None,
                 settings: HttpSettings = HttpSettings(), stand_in: str = "fp") -> None:
        self.role_urls = {role: display_url(url) for role, url in role_urls.items()}
        self.models = dict(models or {})
        label = self.models.get("unlearned") or urlsplit(self.role_urls.get("unlearned", "")).netloc or "endpoint"
        super().__init__(FormatSpec(raw=f"served:{label}", family="served", head="served", args=(label,)))
        self.settings = settings
        self.stand_in = stand_in
        self._runs: dict[str, dict[str, Any]] = {}

    @classmethod
    def parse(cls, spec: FormatSpec) -> "ServedFormat":
        raise InputError(f"format {spec.raw!r}: served models are audited with --served URL, not as a format name")

    def client(self, role: str) -> HttpClient:
        return HttpClient(self.role_urls[role], self.settings, api_key_from_env())

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        role = ctx.role
        if not role:
            raise MeasurementError("a served row needs ctx.role (base, unlearned, ...) to pick its endpoint")
        if role not in self.role_urls:
            yield from self._stand_in(checkpoint, ctx, role)
            return
        from auditq.backends.openai_http import ServedLM
        from auditq.backends.served_api import discover
        from auditq.probes.text import special_prefix

        tokenizer = checkpoint.tokenizer
        identity = discover(self.client(role), self.models.get(role))
        lm = ServedLM(self.client(role), identity, prefix=special_prefix(tokenizer),
                      eos_token_id=checkpoint.eos_token_id, n_vocab=len(tokenizer),
                      encode=lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"]),
                      decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False))
        n_checked = check_served_tokenizer(lm, tokenizer, ctx.parity_texts)
        run = {**identity.details(), "tokenizer_parity_texts": n_checked,
               "unavailable_features": dict(lm.unavailable), "full_distribution": lm.full_distribution}
        if lm.notes:
            run["note"] = "; ".join(lm.notes)
        self._runs[role] = run
        try:
            yield lm
        finally:
            run["requests"] = lm.requests

    def _stand_in(self, checkpoint, ctx: FormatContext, role: str):
        from auditq.formats import make_format

        stand_in = make_format(self.stand_in)
        same_tokens = self._skips_first_token()
        with stand_in.apply(checkpoint, replace(ctx, codes_as=self.name)) as lm:
            self._runs[role] = {"stand_in": f"no endpoint given for the {role} model: its checkpoint was measured "
                                            f"in process as {self.stand_in} (--served-as)"
                                            + (", scored over tokens 2..n like the served model" if same_tokens else ""),
                                "stand_in_engine": getattr(stand_in, "engine", "")}
            yield SkipFirstToken(lm) if same_tokens else lm

    def _skips_first_token(self) -> bool:
        """Whether the served models' server withholds log p(x1 | BOS) (llama-cpp-python): then an in-process
        role of this row is scored over the same tokens 2..n, so the row compares like with like."""
        from auditq.backends.served_api import LLAMA_CPP_PYTHON, discover

        served = next(iter(r for r in ("unlearned", "base") if r in self.role_urls), None)
        if served is None:
            return False
        return discover(self.client(served), self.models.get(served)).server == LLAMA_CPP_PYTHON

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {"engine": self.engine, "endpoints": dict(self.role_urls), "served_as": self.stand_in}
        if self._runs:
            info["by_role"] = {role: dict(run) for role, run in self._runs.items()}
            served = [r for r in self._runs.values() if "served_model" in r]
            if served:
                info.update({k: v for k, v in served[-1].items() if k not in ("requests",)})
        return info


class SkipFirstToken:
    """A LanguageModel view whose scores leave out the first predicted token (see ServedFormat._skips_first_token)."""

    def __init__(self, lm) -> None:
        self._lm = lm
        self.description = f"{lm.description}, tokens 2..n"

    def score(self, sequences):
        from auditq.backends.base import TokenScores

        return [TokenScores(s.logprobs[1:], s.mean_logp[1:], s.std_logp[1:]) for s in self._lm.score(sequences)]

    def score_logprobs(self, sequences):
        from auditq.backends.base import TokenScores

        return [TokenScores(s.logprobs[1:], s.mean_logp[1:], s.std_logp[1:])
                for s in self._lm.score_logprobs(sequences)]

    def __getattr__(self, name):  # generate, close, tokenize: the wrapped model's
        return getattr(self._lm, name)


def check_served_tokenizer(lm, tokenizer, texts) -> int:
    """Refuse (one line) unless the server tokenizes every suite text exactly like auditq's tokenizer."""
    n = 0
    for text in texts:
        expected = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        got = lm.server_tokenize(text)
        if got != expected:
            at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            raise EndpointError(f"the server's tokenizer differs from the checkpoint's on a suite text (first "
                                f"difference at token {at}: {expected[at:at + 3]} vs {got[at:at + 3]}); "
                                "serve the model with its checkpoint's tokenizer")
        n += 1
    return n
