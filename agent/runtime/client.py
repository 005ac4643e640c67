"""The agent's side of the collector API (docs/api.md): enrollment, ingest, job long-poll,
the effective config (with its ETag) and the config report.

The agent key is obtained once with a one-time token and kept in a credentials file
(JSON, mode 0600); every later call authenticates with that key alone.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent import __version__
from agent.runtime.contract import (
    IngestAnswerError,
    ProfileError,
    parse_effective_config,
    parse_ingest_answer,
    to_json,
)
from agent.runtime.http import HttpError, KeptAlive, Response, request
from agent.wire.lite import ConfigReport, EffectiveConfig, IngestAnswer, JobStatus


class CollectorError(Exception):
    """A call to the collector failed. `retry` says whether trying again later can help;
    `status` is the HTTP status when the collector answered (None: no answer);
    `retry_after_s` is what its Retry-After header asked for; `detail` its reason."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry: bool = True,
        retry_after_s: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry
        self.retry_after_s = retry_after_s
        self.detail = detail


class AuthError(CollectorError):
    """The collector refused the token or the agent key (401/403)."""


class AnswerError(CollectorError):
    """The collector answered 2xx with something that is not the answer of the API."""


# Ingest answers are a few hundred bytes per item; more than this is not an answer.
MAX_INGEST_ANSWER = 4 * 1024 * 1024
# An effective config is at most 64 modules of a few hundred bytes.
MAX_CONFIG_ANSWER = 1024 * 1024
MAX_RETRY_AFTER_S = 3600.0


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header value asks to wait (delta-seconds or an HTTP date),
    within [0, MAX_RETRY_AFTER_S]; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    from email.utils import parsedate_to_datetime  # rare: `email` stays out of the idle agent

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - now, MAX_RETRY_AFTER_S))


@dataclass(frozen=True)
class Credentials:
    collector_url: str
    agent_id: str
    agent_key: str
    site_id: str

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no agent credentials; enroll first with "
                "`qos-scout agent enroll --collector URL --token TOKEN`"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: credentials file is damaged ({exc!r}); enroll again"
            ) from None

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (the key never sits in a world-readable file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _detail(resp: Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200] or resp.reason
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:200]


def _raise_for_status(resp: Response, what: str) -> None:
    if resp.status in (401, 403):
        detail = _detail(resp)
        raise AuthError(
            f"{what}: {resp.status} {detail}", status=resp.status, retry=False, detail=detail
        )
    if 300 <= resp.status < 400:
        where = resp.headers.get("location", "?")[:200]
        raise CollectorError(
            f"{what}: {resp.status} redirect to {where}; set collector.url to the final address",
            status=resp.status,
        )
    if resp.status >= 400 or resp.status < 200:
        detail = _detail(resp)
        raise CollectorError(
            f"{what}: {resp.status} {detail}",
            status=resp.status,
            retry=resp.status >= 500 or resp.status in (408, 429),
            retry_after_s=retry_after(resp.headers.get("retry-after"), time.time()),
            detail=detail,
        )


# What to check next, per kind of connection failure (HttpError.kind).
NEXT_STEP = {
    "dns": "check the spelling of the collector URL and this host's DNS servers",
    "refused": "check the host and port of the collector URL, and that the collector is running "
    "(`qos-scout collector serve`, or its service)",
    "unreachable": "check the collector URL and this host's network route to it",
    "connect-timeout": "check the collector URL, and that the site's firewall lets this host "
    "open TCP connections to it",
    "tls-verify": "install the CA that signed the collector's certificate on this host "
    "(update-ca-certificates, or SSL_CERT_FILE), or in a lab set collector.verify_tls: false",
    "tls": "check the URL's scheme: https:// for a collector behind TLS, http:// without",
    "timeout": "the collector accepted the connection but did not answer in time; check its "
    "logs and load",
    "closed": "the connection broke mid-answer; a proxy in between may cut it (check its logs)",
    "url": "give the collector URL as http(s)://host[:port]",
}


def connection_failed(what: str, exc: HttpError) -> CollectorError:
    """A CollectorError for a failed exchange: the cause, then what to check next."""
    step = NEXT_STEP.get(exc.kind)
    return CollectorError(f"{what}: {exc}" + (f"; {step}" if step else ""))


def _check(resp: Response, what: str) -> Any:
    _raise_for_status(resp, what)
    try:
        return resp.json()
    except (ValueError, RecursionError):
        raise AnswerError(
            f"{what}: the collector answered something that is not JSON", status=resp.status
        ) from None


async def enroll(
    url: str, token: str, *, timeout_s: float = 15.0, verify: bool = True
) -> Credentials:
    """Trade a one-time enrollment token for the agent's own key."""
    url = url.rstrip("/")
    body = {"token": token, "hostname": socket.gethostname(), "version": __version__}
    try:
        resp = await request(
            "POST",
            f"{url}/api/v1/enroll",
            headers={"Content-Type": "application/json"},
            body=json.dumps(body).encode(),
            timeout_s=timeout_s,
            verify=verify,
        )
    except HttpError as exc:
        raise connection_failed("enroll", exc) from None
    try:
        data = _check(resp, f"enroll at {url}")
    except AuthError as exc:
        raise AuthError(
            f"{exc}; ask for a new token (each enrolls one agent): "
            "`qos-scout collector token create --site SITE_ID` at the collector, "
            "or the partner's token API",
            status=exc.status, retry=False, detail=exc.detail,
        ) from None  # fmt: skip
    try:
        return Credentials(url, str(data["agent_id"]), str(data["agent_key"]), str(data["site_id"]))
    except (KeyError, TypeError):
        raise CollectorError(f"enroll at {url}: answer lacks agent_id/agent_key/site_id") from None


class CollectorClient:
    """An authenticated session with the collector for one agent."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 15.0, verify: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.verify = verify
        self._headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": f"qos-scout/{__version__}",
            "Accept": "application/json",
        }
        # the job long-poll's connection, kept from one poll to the next (a new TCP and, with
        # https, TLS connection every wait_s was most of a poll's cost); other calls open
        # their own, as they may run while a poll waits
        self.poll_connection = KeptAlive()

    async def aclose(self) -> None:
        """Close the job poll's kept-alive connection."""
        self.poll_connection.close()

    def set_key(self, key: str) -> None:
        """Use another agent key from the next call on (the agent was enrolled again)."""
        self._headers["Authorization"] = f"Bearer {key}"

    async def _exchange(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        max_body: int | None = None,
        conn: KeptAlive | None = None,
    ) -> Response:
        try:
            return await (request if conn is None else conn.request)(
                method,
                self.url + path,
                params=params,
                headers={**self._headers, **(headers or {})},
                body=body,
                timeout_s=timeout_s or self.timeout_s,
                verify=self.verify,
                **({} if max_body is None else {"max_body": max_body}),
            )
        except HttpError as exc:
            raise connection_failed(what, exc) from None

    async def _call(self, method: str, path: str, what: str, **kw: Any) -> Any:
        return _check(await self._exchange(method, path, what, **kw), what)

    async def post_results(self, ids: list[str], results_json: list[bytes]) -> IngestAnswer:
        """POST already-serialised results (whose spool ids are `ids`) as one gzip batch;
        returns the ingest answer, validated against the batch (`wire.ingest`). A 4xx/5xx
        raises CollectorError with its status; an answer that is not the model raises
        AnswerError."""
        body = b'{"results":[' + b",".join(results_json) + b"]}"
        what = "ship results"
        resp = await self._exchange(
            "POST",
            "/api/v1/results",
            what,
            body=gzip.compress(body, compresslevel=6),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            max_body=MAX_INGEST_ANSWER,
        )
        _raise_for_status(resp, what)
        try:
            return parse_ingest_answer(resp.body, ids)
        except IngestAnswerError as exc:
            raise AnswerError(f"{what}: {resp.status} {exc}", status=resp.status) from None

    async def poll_jobs(
        self, wait_s: float, spool_depth: int | None = None
    ) -> list[dict[str, Any]]:
        """The jobs offered, as sent: the job runner validates each (`wire.jobs.Job.parse`),
        so that a malformed one can still be reported failed by its id. `spool_depth` (the
        results waiting to ship) is told to the collector, which shows it with the agent."""
        params = {"wait": int(wait_s)}
        if spool_depth is not None:
            params["spool"] = spool_depth
        data = await self._call(
            "GET",
            "/api/v1/agent/jobs",
            "poll jobs",
            params=params,
            timeout_s=wait_s + self.timeout_s,
            conn=self.poll_connection,
        )
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, list):
            raise CollectorError("poll jobs: answer lacks `jobs`")
        return [j for j in jobs if isinstance(j, dict)]

    async def job_status(self, job_id: str, status: JobStatus) -> None:
        """POST the job's status (the wire model `wire.jobs.JobStatus`). The id is the
        collector's, escaped into the path (a malformed job's id is whatever was sent)."""
        await self._call(
            "POST",
            f"/api/v1/agent/jobs/{quote(job_id, safe='')}/status",
            f"job {job_id[:64]!r} status",
            body=to_json(status, exclude_none=True),
            headers={"Content-Type": "application/json"},
        )

    async def get_config(self, etag: str | None) -> EffectiveConfig | None:
        """The effective config (`wire.profiles.EffectiveConfig`), or None when the collector
        answers 304 to `If-None-Match: etag` (unchanged: nothing is downloaded). An answer
        that is not the model raises AnswerError naming the key."""
        what = "fetch config"
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        resp = await self._exchange(
            "GET", "/api/v1/agent/config", what, headers=headers, max_body=MAX_CONFIG_ANSWER
        )
        if resp.status == 304:
            return None
        _raise_for_status(resp, what)
        try:
            return parse_effective_config(json.loads(resp.body))
        except (ValueError, RecursionError) as exc:
            msg = str(exc) if isinstance(exc, ProfileError) else "not JSON"
            raise AnswerError(f"{what}: {msg}", status=resp.status) from None

    async def report_config(self, report: ConfigReport) -> None:
        """POST the config version the agent runs and its software version (answered 204)."""
        what = "report config"
        resp = await self._exchange(
            "POST",
            "/api/v1/agent/config/status",
            what,
            body=to_json(report),
            headers={"Content-Type": "application/json"},
        )
        _raise_for_status(resp, what)
