"""A small JSON-over-HTTP client for OpenAI-compatible servers (stdlib only: the light stage uses it too).

Why its own client: an audit talks to a server it does not control, so every failure must become one
line that names the endpoint and never the API key (exit 2 before any work, or a row UNKNOWN mid-audit).
It retries 429 and 5xx with exponential backoff (honouring a short Retry-After), gives up after
`retries`, bounds every request by `timeout_s`, and runs at most `concurrency` requests at a time.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from auditq.errors import MeasurementError

T = TypeVar("T")
R = TypeVar("R")

#: environment variables the API key is read from, in order (never from a flag: it would reach logs)
API_KEY_VARS = ("AUDITQ_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class EndpointError(MeasurementError):
    """The server could not be reached or answered something auditq cannot use (one line, no key)."""


@dataclass(frozen=True)
class HttpSettings:
    """Network behaviour of one audit's requests (--served-timeout, --concurrency)."""

    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4


def api_key_from_env() -> str | None:
    """The key from AUDITQ_API_KEY, else OPENAI_API_KEY; None when neither is set."""
    for var in API_KEY_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def normalise_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash or `/v1` (auditq adds the paths itself)."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


class HttpClient:
    """GET/POST JSON against one server base URL."""

    def __init__(self, base_url: str, settings: HttpSettings = HttpSettings(), api_key: str | None = None) -> None:
        self.base_url = normalise_url(base_url)
        self.settings = settings
        self._api_key = api_key

    def _scrub(self, text: str) -> str:
        """`text` with the API key removed (a server might echo a header back in an error body)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def get_json(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items` with at most `concurrency` requests in flight; results in input order."""
        workers = max(1, min(int(self.settings.concurrency), len(items)))
        if workers == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------------ internals

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        where = f"{method} {self.base_url}{path}"
        delay = float(self.settings.backoff_s)
        for attempt in range(int(self.settings.retries) + 1):
            try:
                with urllib.request.urlopen(self._request(method, path, body), timeout=self.settings.timeout_s) as r:
                    raw = r.read()
            except urllib.error.HTTPError as exc:
                if exc.code in RETRY_STATUS and attempt < self.settings.retries:
                    time.sleep(_retry_after(exc, delay))
                    delay *= 2
                    continue
                raise EndpointError(f"{where} answered HTTP {exc.code}{self._detail(exc)}") from None
            except (socket.timeout, TimeoutError):
                raise EndpointError(f"{where} did not answer within {self.settings.timeout_s:g} s "
                                    "(--served-timeout)") from None
            except urllib.error.URLError as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    raise EndpointError(f"{where} did not answer within {self.settings.timeout_s:g} s "
                                        "(--served-timeout)") from None
                raise EndpointError(f"cannot reach {where}: {self._scrub(str(reason))}") from None
            except (ConnectionError, OSError) as exc:  # reset mid-response, broken pipe
                raise EndpointError(f"{where}: connection failed ({type(exc).__name__}: "
                                    f"{self._scrub(str(exc))})") from None
            return self._decode(raw, where)
        raise EndpointError(f"{where}: still failing after {self.settings.retries} retries")  # pragma: no cover

    def _decode(self, raw: bytes, where: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _raise_bad_json(where, raw, exc)

    def _detail(self, exc: urllib.error.HTTPError) -> str:
        try:
            text = exc.read(300).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the status line is enough
            return ""
        text = " ".join(self._scrub(text).split())
        return f": {text[:160]}" if text else ""


def _raise_bad_json(where: str, raw: bytes, exc: Exception) -> Any:
    raise EndpointError(f"{where} returned a body that is not complete JSON ({len(raw)} bytes: "
                        f"{type(exc).__name__} at char {getattr(exc, 'pos', '?')}; truncated?)")


def _retry_after(exc: urllib.error.HTTPError, default: float) -> float:
    """Seconds to wait before a retry: the server's Retry-After (capped at 30 s), else `default`."""
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        return min(30.0, max(0.0, float(value))) if value is not None else default
    except ValueError:
        return default


def split_url(url: str) -> urllib.parse.SplitResult:
    """The URL's parts (for the light stage's syntax checks)."""
    return urllib.parse.urlsplit(url.strip())
