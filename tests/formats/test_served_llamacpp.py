"""The demo's fragile model as a GGUF, served by llama-cpp-python's OpenAI-compatible server (a real
`python -m llama_cpp.server` on 127.0.0.1, started and killed here), audited over HTTP.

What this pins:
- per-token log-probs, per-sample LOSS and Min-K% over HTTP equal auditq's in-process llama.cpp scoring of
  the same file within 1e-4, on the positions that server returns (it nulls log p(x1 | BOS); see
  auditq.backends.served_api), and greedy continuations are identical token for token;
- the installed `auditq check` in a clean environment audits the served model: every check of the
  served row has the verdict of the in-process gguf:f32 row, Min-K%++ is marked unavailable, and the
  API key (the server requires one) appears in no output;
- a server that changes its model mid-audit makes the row UNKNOWN, never scored.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp.server.app")
pytest.importorskip("gguf")

pytestmark = [pytest.mark.slow, pytest.mark.gguf]

SECRET = "sk-auditq-test-7f3a9c1e-never-print"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    request = urllib.request.Request(url + "/v1/models", headers={"Authorization": f"Bearer {SECRET}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"llama_cpp.server not ready within {limit_s} s")


@pytest.fixture(scope="module")
def served(demo_models, tmp_path_factory):
    """(url, gguf path): fragile as an F32 GGUF behind a real llama-cpp-python server (F32 KV cache, as
    auditq's in-process scoring uses), requiring an API key."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from auditq.formats.gguf.convert import convert_to_gguf

    work = tmp_path_factory.mktemp("served")
    model = AutoModelForCausalLM.from_pretrained(demo_models.fragile)
    gguf = convert_to_gguf(model, AutoTokenizer.from_pretrained(demo_models.fragile), model.config,
                           work / "fragile-f32.gguf").path
    port = _free_port()
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "512", "--n_threads", "2", "--type_k", "0", "--type_v", "0", "--api_key", SECRET],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url, gguf
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def _served_lm(url, tokenizer, eos):
    from auditq.backends.http_client import HttpClient, HttpSettings
    from auditq.backends.openai_http import ServedLM
    from auditq.backends.served_api import discover
    from auditq.probes.text import special_prefix

    client = HttpClient(url, HttpSettings(timeout_s=60, concurrency=2), api_key=SECRET)
    identity = discover(client, None)
    return ServedLM(client, identity, prefix=special_prefix(tokenizer), eos_token_id=eos, n_vocab=len(tokenizer),
                    encode=lambda t: list(tokenizer(t, add_special_tokens=False)["input_ids"]),
                    decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False))


def test_http_scores_and_greedy_equal_in_process(served, demo_models):
    from transformers import AutoTokenizer

    from auditq.backends.llamacpp_lm import LlamaCppLM
    from auditq.backends.base import TokenScores
    from auditq.probes.mia import mia_features
    from auditq.probes.text import encode_sequences
    from auditq.suite.records import load_suite

    url, gguf = served
    tokenizer = AutoTokenizer.from_pretrained(demo_models.fragile)
    suite = load_suite(demo_models.suite)
    texts = [r.text for r in suite.forget.texts[:12] + suite.holdout.texts[:12]]
    seqs = encode_sequences(tokenizer, texts)
    lm = _served_lm(url, tokenizer, tokenizer.eos_token_id)
    local = LlamaCppLM(gguf, eos_token_id=tokenizer.eos_token_id, n_threads=2)
    try:
        assert lm.identity.server == "llama-cpp-python" and lm.identity.model_id.endswith("fragile-f32.gguf")
        over_http, in_process = lm.score(seqs), local.score(seqs)
        worst = 0.0
        for text, h, p in zip(texts, over_http, in_process):
            assert h.n_tokens == p.n_tokens - 1  # the server does not return log p(x1 | BOS)
            worst = max(worst, float(np.abs(h.logprobs - p.logprobs[1:]).max()))
            same_positions = TokenScores(p.logprobs[1:], p.mean_logp[1:], p.std_logp[1:])
            fh, fp = mia_features(h, text, 0.4), mia_features(same_positions, text, 0.4)
            for name in ("loss", "zlib", "mink"):
                assert abs(fh[name] - fp[name]) < 1e-4, (name, fh[name], fp[name])
            assert np.isnan(fh["minkpp"])  # never approximated from top-k
        assert worst < 1e-4
        prompts = [s[:17] for s in seqs[:6]]
        assert lm.generate(prompts, 20) == local.generate(prompts, 20)
        stops = {tokenizer.convert_tokens_to_ids(".")} if "." in tokenizer.get_vocab() else set()
        assert lm.generate(prompts, 20, stops) == local.generate(prompts, 20, stops)
    finally:
        local.close()


def _small_suite(src: Path, dst: Path, keep_every: int = 3) -> Path:
    """The demo suite with every `keep_every`-th record per split (QA and text alike): same shape, a third the size."""
    shutil.copytree(src, dst)
    for split in ("forget.jsonl", "holdout.jsonl", "retain.jsonl"):
        lines = (src / split).read_text().splitlines()
        (dst / split).write_text("\n".join(lines[::keep_every]) + "\n")
    return dst


def test_installed_auditq_audits_the_served_model_like_the_in_process_gguf_row(served, demo_models, tmp_path):
    url, _ = served
    suite = _small_suite(Path(demo_models.suite), tmp_path / "suite", keep_every=4)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "AUDITQ_CACHE_DIR": str(tmp_path / "cache"), "LANG": "C.UTF-8", "AUDITQ_API_KEY": SECRET}
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "auditq"), "check", str(demo_models.base), str(demo_models.fragile),
           "--retrain", str(demo_models.retrain), "--suite", str(suite), "-f", "gguf:f32", "--probes", "mia,knowmem",
           "--served", url + "/v1", "--served-as", "gguf:f32", "--no-cache", "--quiet", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {f["format"]: f for f in report["formats"]}
    served_row = next(f for name, f in rows.items() if name.startswith("served:"))
    assert served_row["error"] is None and not any(r.get("error") for r in served_row["roles"].values())
    local = {c["check"]: c["verdict"] for c in rows["gguf:f32"]["checks"]}
    remote = {c["check"]: c["verdict"] for c in served_row["checks"]}
    assert remote == local and local  # same checks, same verdicts
    details = served_row["details"]
    assert details["server"] == "llama-cpp-python" and details["served_model"].endswith("fragile-f32.gguf")
    assert "minkpp" in details["unavailable_features"] and "minkpp" not in served_row["roles"]["unlearned"]["mia"]
    everything = proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert SECRET not in everything


def test_wrong_model_name_and_dead_endpoint_exit_2_before_work(served, demo_models, tmp_path):
    url, _ = served
    base = [str(Path(sys.executable).parent / "auditq"), "check", str(demo_models.base), str(demo_models.fragile),
            "--suite", str(demo_models.suite), "--no-cache"]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "AUDITQ_API_KEY": SECRET}
    for extra, message in ((["--served", url, "--served-model", "nope"], "does not serve model 'nope'"),
                           (["--served", f"http://127.0.0.1:{_free_port()}"], "cannot reach"),
                           (["--served", "ftp://x"], "expected an http(s)://host")):
        proc = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
        assert SECRET not in proc.stderr + proc.stdout


def test_model_changed_mid_audit_is_an_error(served, demo_models):
    """The served identity is re-read after every batch: another model id there stops the row."""
    from transformers import AutoTokenizer

    from auditq.backends.http_client import EndpointError
    from auditq.backends.served_api import ServerIdentity

    url, _ = served
    tokenizer = AutoTokenizer.from_pretrained(demo_models.fragile)
    lm = _served_lm(url, tokenizer, tokenizer.eos_token_id)
    swapped = ServerIdentity(**{**lm.identity.__dict__, "model_id": "fragile-v1.gguf"})
    lm.identity = swapped
    with pytest.raises(EndpointError, match="no longer serves 'fragile-v1.gguf'.*changed mid-audit"):
        lm.check_identity()
    assert os.environ.get("AUDITQ_API_KEY") is None  # the test never leaks its key into this process's env
