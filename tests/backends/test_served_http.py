"""The served-model client against real local HTTP servers that misbehave (stdlib http.server on 127.0.0.1),
and the vLLM answer shape through the same parser (vLLM cannot run on these CPU machines).

The llama-cpp-python server itself is exercised in tests/formats/test_served_llamacpp.py.
"""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from auditq.backends.http_client import EndpointError, HttpClient, HttpSettings
from auditq.backends.served_api import discover, echo_logprobs, vllm_completion_ids, vllm_prompt_logprobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(handler_cls):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


MODELS = json.dumps({"object": "list", "data": [{"id": "m1", "object": "model"}]}).encode()


class Truncated(_Quiet):
    """An OpenAI-shaped model list, then completions cut off mid-JSON."""

    def do_GET(self):
        self._send(200, MODELS) if self.path == "/v1/models" else self._send(404, b'{"detail":"Not Found"}')

    def do_POST(self):
        self._send(200, b'{"choices": [{"text": "abc", "logprobs": {"token_logprobs": [null, -0.5')


class Slow(Truncated):
    def do_GET(self):
        time.sleep(3)
        super().do_GET()


class Flaky(Truncated):
    """503 twice, then a good answer: the client must retry with backoff."""

    calls = 0

    def do_GET(self):
        Flaky.calls += 1
        if Flaky.calls <= 2:
            self._send(503, b'{"error": "busy"}')
        else:
            super().do_GET()


class EchoesAuth(_Quiet):
    """Answers 401 with the Authorization header in the body (a server that leaks what it got)."""

    def do_GET(self):
        self._send(401, json.dumps({"error": f"bad key {self.headers.get('Authorization')}"}).encode())


def test_connection_refused_is_one_line():
    client = HttpClient(f"http://127.0.0.1:{free_port()}", HttpSettings(timeout_s=2, retries=0))
    with pytest.raises(EndpointError, match="cannot reach GET http://127.0.0.1:[0-9]+/v1/models") as info:
        discover(client, None)
    assert "\n" not in str(info.value)


def test_non_openai_server_is_refused():
    with local_server(http.server.SimpleHTTPRequestHandler) as url:  # python's own file server
        with pytest.raises(EndpointError, match="is not an OpenAI-compatible server"):
            discover(HttpClient(url, HttpSettings(timeout_s=5, retries=0)), None)


def test_wrong_model_name_is_refused_and_right_one_found():
    with local_server(Truncated) as url:
        client = HttpClient(url, HttpSettings(timeout_s=5, retries=0))
        with pytest.raises(EndpointError, match="does not serve model 'nope' \\(it serves: m1\\)"):
            discover(client, "nope")
        assert discover(client, None).model_id == "m1"


def test_slow_server_times_out():
    with local_server(Slow) as url:
        start = time.monotonic()
        with pytest.raises(EndpointError, match="did not answer within 0.5 s"):
            discover(HttpClient(url, HttpSettings(timeout_s=0.5, retries=0)), None)
        assert time.monotonic() - start < 2.5


def test_truncated_json_is_an_error_not_a_score():
    with local_server(Truncated) as url:
        client = HttpClient(url, HttpSettings(timeout_s=5, retries=0))
        with pytest.raises(EndpointError, match="not complete JSON .*truncated"):
            client.post_json("/v1/completions", {"prompt": "x"})


def test_503_is_retried_with_backoff():
    Flaky.calls = 0
    with local_server(Flaky) as url:
        ids = discover(HttpClient(url, HttpSettings(timeout_s=5, retries=3, backoff_s=0.05)), None)
    assert ids.model_id == "m1" and Flaky.calls >= 3
    Flaky.calls = 0
    with local_server(Flaky) as url, pytest.raises(EndpointError, match="HTTP 503"):
        discover(HttpClient(url, HttpSettings(timeout_s=5, retries=1, backoff_s=0.05)), None)


def test_api_key_never_in_an_error_message():
    secret = "sk-test-DO-NOT-LEAK-1234"
    with local_server(EchoesAuth) as url:
        with pytest.raises(EndpointError) as info:
            discover(HttpClient(url, HttpSettings(timeout_s=5, retries=0), api_key=secret), None)
    assert "HTTP 401" in str(info.value) and secret not in str(info.value)


# --------------------------------------------------------------------------- answer shapes

def test_echo_shape_wrong_count_is_refused():
    answer = {"choices": [{"text": "", "logprobs": {"token_logprobs": [None, -1.0, -2.0]}}],
              "usage": {"prompt_tokens": 4}}
    assert echo_logprobs(answer, 4, "t").tolist() == [-1.0, -2.0]  # BOS + 3 tokens: entries 1..2 (entry 0 null)
    with pytest.raises(EndpointError, match="counted 4 prompt tokens, auditq sent 5"):
        echo_logprobs(answer, 5, "t")
    del answer["usage"]
    with pytest.raises(EndpointError, match="3 prompt log-probs for 4 prompt tokens"):
        echo_logprobs(answer, 5, "t")
    answer["choices"][0]["logprobs"]["token_logprobs"][1] = None  # a hole where a number must be
    with pytest.raises(EndpointError, match="missing or not a number"):
        echo_logprobs(answer, 4, "t")


#: vLLM's answer to POST /v1/completions {"prompt": [0, 5, 7], "max_tokens": 1, "prompt_logprobs": k}.
#: Shape from vllm-project/vllm: vllm/logprobs.py (`Logprob(logprob, rank, decoded_token)`,
#: `PromptLogprobs = list[dict[int, Logprob] | None]`) and the completion protocol's
#: `CompletionResponseChoice.prompt_logprobs` (entry 0 None; JSON turns the int token ids into strings).
#: The prompt's own token is always in its entry, next to the top-k (here k=1, so position 2 holds two).
VLLM_SAMPLE = {
    "id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m1",
    "choices": [{"index": 0, "text": " x", "logprobs": None, "finish_reason": "length", "stop_reason": None,
                 "prompt_logprobs": [
                     None,
                     {"5": {"logprob": -0.25, "rank": 1, "decoded_token": "a"}},
                     {"7": {"logprob": -3.5, "rank": 4, "decoded_token": "b"},
                      "2": {"logprob": -0.1, "rank": 1, "decoded_token": "c"}},
                 ]}],
    "usage": {"prompt_tokens": 3, "total_tokens": 4, "completion_tokens": 1},
}


def test_vllm_prompt_logprobs_shape():
    logp, mean, std = vllm_prompt_logprobs(VLLM_SAMPLE, [0, 5, 7], "t", n_vocab=None)
    assert logp.tolist() == [-0.25, -3.5] and np.isnan(mean).all() and np.isnan(std).all()
    with pytest.raises(EndpointError, match="3 prompt_logprobs entries for 4 prompt tokens"):
        vllm_prompt_logprobs(VLLM_SAMPLE, [0, 5, 7, 9], "t")
    with pytest.raises(EndpointError, match="lacks the log-prob of its own token 8"):
        vllm_prompt_logprobs(VLLM_SAMPLE, [0, 5, 8], "t")


def test_vllm_full_distribution_gives_mean_and_std():
    """With prompt_logprobs -1 every position holds the whole vocabulary: mean/std are exact, as in process."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6))
    logps = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    entries = [None] + [{str(v): {"logprob": float(lp[v]), "rank": 1, "decoded_token": ""} for v in range(6)}
                        for lp in logps]
    answer = {"choices": [{"text": "", "prompt_logprobs": entries}]}
    logp, mean, std = vllm_prompt_logprobs(answer, [0, 3, 4], "t", n_vocab=6)
    p = np.exp(logps)
    want_mean = (p * logps).sum(-1)
    want_std = np.sqrt((p * logps ** 2).sum(-1) - want_mean ** 2)
    assert np.allclose(logp, [logps[0, 3], logps[1, 4]]) and np.allclose(mean, want_mean) and np.allclose(std, want_std)
    assert not math.isnan(mean[0])


def test_vllm_generated_ids():
    answer = {"choices": [{"text": "ab", "logprobs": {"tokens": ["token_id:5", "token_id:9"]}}]}
    assert vllm_completion_ids(answer, "t") == [5, 9]
    assert vllm_completion_ids({"choices": [{"text": "ab", "logprobs": {"tokens": ["a", "b"]}}]}, "t") is None
