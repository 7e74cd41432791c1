"""Reaching a Ray head's Jobs API: which address to use, a fail-fast probe, the SDK client, and the
translation of the SDK's authentication and connection failures into one-line `UserError`s.

Trade-off: every call first probes `GET {address}/api/version` with a short timeout, an extra
round trip that buys a one-line `UserError` instead of a hang or a stack trace when the address is
wrong or the head is down. The address the caller gives always wins over RAY_ADDRESS /
RAY_API_SERVER_ADDRESS (which Ray's SDK would otherwise silently prefer); those variables only
supply the default when no address is given.
"""
from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Iterator

from meta_dist.errors import UserError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
PROBE_TIMEOUT_S = 3.0

_ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_START_HINT = "start a head with `cluster/local.sh start` or pass --address URL"


def resolve_address(address: str | None) -> str:
    """The Jobs API base URL: `address`, else RAY_API_SERVER_ADDRESS / an http RAY_ADDRESS, else
    http://127.0.0.1:8265. Raises UserError for anything that is not an http(s) URL."""
    if address is None:
        address = os.environ.get("RAY_API_SERVER_ADDRESS") or ""
        ray_address = os.environ.get("RAY_ADDRESS", "")
        if not address and ray_address.startswith(("http://", "https://")):
            address = ray_address
        address = address or DEFAULT_ADDRESS
    parsed = urllib.parse.urlparse(address.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(
            f"--address must be the HTTP URL of a Ray head's Jobs API (its dashboard), e.g. "
            f"{DEFAULT_ADDRESS}; got {address!r} (a GCS address like 127.0.0.1:6379 or ray:// "
            f"will not do)")
    return address.strip().rstrip("/")


def check_reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast with a one-line UserError unless a Ray Jobs API answers at `url`.

    401/403 count as reachable: the head has token authentication on, and the SDK call that
    follows attaches the token (or reports that it is missing)."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            return
        raise UserError(f"{url} answered HTTP {e.code} to /api/version: it is not a Ray Jobs "
                        f"API; {_START_HINT}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot reach the Ray Jobs API at {url} ({reason}): {_START_HINT}") from e
    try:
        version = json.loads(body)["ray_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{url} answered /api/version without a Ray version: it is not a Ray "
                        f"Jobs API; {_START_HINT}") from e
    if not isinstance(version, str):
        raise UserError(f"{url}/api/version returned an unexpected payload: {body[:200]!r}")


@contextlib.contextmanager
def _masked_address_env() -> Iterator[None]:
    """Hide RAY_ADDRESS / RAY_API_SERVER_ADDRESS while the SDK client resolves its address."""
    saved = {name: os.environ.pop(name) for name in _ADDRESS_ENV_VARS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str | None) -> tuple[JobSubmissionClient, str]:
    """A JobSubmissionClient for the checked Jobs API URL, and that URL."""
    url = resolve_address(address)
    check_reachable(url)
    from ray.job_submission import JobSubmissionClient

    with _masked_address_env(), translate_errors(url):
        return JobSubmissionClient(url), url


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn the SDK's authentication and connection failures into one-line UserErrors."""
    import aiohttp
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as e:
        first_line = str(e).strip().splitlines()[0]
        raise UserError(
            f"the Ray Jobs API at {url} refused the request ({first_line}); set RAY_AUTH_MODE=token "
            f"and the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
            f"(see cluster/README.md)") from e
    except (ConnectionError, requests.exceptions.ConnectionError,
            aiohttp.ClientConnectionError) as e:
        raise UserError(f"lost the connection to the Ray Jobs API at {url}: is the head still "
                        f"running? ({type(e).__name__})") from e
