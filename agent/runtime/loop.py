"""The agent's main loop (`qos-scout agent run`): scheduler -> spool -> shipper, the job
long-poll, the central config and the local /metrics, with a clean stop that flushes the
spool."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from agent.errors import ConfigError
from agent.runtime.central import ConfigSync
from agent.runtime.client import CollectorClient, Credentials
from agent.runtime.config import AgentConfig
from agent.runtime.jobs import JobRunner
from agent.runtime.metrics import AgentCollector, ResultBook, serve
from agent.runtime.scheduler import Scheduler
from agent.runtime.shipper import Shipper, backoff_delay, is_urgent
from agent.runtime.spool import Spool
from agent.wire.lite import ProbeResult

log = logging.getLogger(__name__)

SPOOL_ENFORCE_EVERY_S = 60.0
RESTART_INITIAL_S, RESTART_MAX_S = 1.0, 60.0


def release_memory() -> None:
    """Return free heap pages to the OS (glibc `malloc_trim`); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def supervise(
    name: str,
    fn: Callable[[], Coroutine[Any, Any, None]],
    restarts: Counter[str],
    rng: random.Random,
    *,
    initial_s: float = RESTART_INITIAL_S,
    max_s: float = RESTART_MAX_S,
) -> None:
    """Run the loop `fn` until cancelled; when it raises (or returns), log it, count it in
    `restarts` (`qos_scout_agent_task_restarts_total`) and start it again after a backoff
    (`initial_s` doubling to `max_s`; back to `initial_s` after a long good run), so no bug
    in one loop ends the agent."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await fn()
            log.error("%s loop ended by itself; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s loop crashed; starting it again", name)
        restarts[name] += 1
        failures = 1 if time.monotonic() - started > max_s * 10 else failures + 1
        await asyncio.sleep(backoff_delay(failures - 1, initial_s, max_s, rng))


class Agent:
    def __init__(
        self, cfg: AgentConfig, creds: Credentials, *, rng: random.Random | None = None
    ) -> None:
        self.cfg = cfg
        self.creds = creds
        self.rng = rng or random.Random()
        self.spool = Spool(
            cfg.spool.path,
            max_bytes=int(cfg.spool.max_mb * 1_000_000),
            max_age_s=cfg.spool.max_age_h * 3600.0,
            max_rejected=cfg.spool.max_rejected,
        )
        self.book = ResultBook()
        self.spool_errors = 0
        self.produced = 0
        url = cfg.collector.url or creds.collector_url
        self.client = CollectorClient(
            url, creds.agent_key, timeout_s=cfg.collector.timeout_s, verify=cfg.collector.verify_tls
        )
        sh = cfg.shipping
        self.shipper = Shipper(
            self.spool,
            self.client,
            batch_size=sh.batch_size,
            interval_s=sh.interval_s,
            max_delay_s=sh.max_delay_s,
            backoff_initial_s=sh.backoff_initial_s,
            backoff_max_s=sh.backoff_max_s,
            bisect_after=sh.bisect_after,
            quarantine_after=sh.quarantine_after,
            rng=self.rng,
            reload_key=self._reload_key,
        )
        from agent.probes.host import default_gateway

        self.scheduler = Scheduler(
            cfg.enabled_modules(),
            self.sink,
            concurrency=cfg.scheduler.concurrency,
            rng=self.rng,
            gateway=default_gateway,
            first_within_s=cfg.scheduler.first_run_within_s,
        )
        self.jobs = (
            JobRunner(
                self.client,
                self.scheduler,
                cfg.site,
                wait_s=cfg.jobs.wait_s,
                on_results=lambda: self.shipper.notify(urgent=True),
                rng=self.rng,
                spool_depth=lambda: self.spool.stats(time.time()).depth,
            )
            if cfg.jobs.enabled
            else None
        )
        self.central = (
            ConfigSync(self.client, self.scheduler, cfg, rng=self.rng)
            if cfg.central.enabled
            else None
        )
        self.metrics_server: Any = None
        self.restarts: Counter[str] = Counter()

    def _reload_key(self) -> str | None:
        """The agent key in the credentials file when it differs from the one in use (the
        agent was enrolled again while it ran); None otherwise."""
        try:
            creds = Credentials.load(self.cfg.collector.credentials_file)
        except (OSError, ValueError):
            return None
        if creds.agent_key == self.creds.agent_key:
            return None
        self.creds = creds
        return creds.agent_key

    def sink(self, result: ProbeResult) -> None:
        """Every result is committed to the spool before anything else sees it."""
        self.produced += 1
        try:
            self.spool.put(result.to_json_dict(), time.time())
        except sqlite3.Error as exc:
            self.spool_errors += 1
            log.error("cannot write result %s to the spool: %s", result.id, exc)
        self.book.observe(result)
        if not result.success and result.error is not None:
            log.info(
                "%s %s %s failed: %s",
                result.module or result.job_id,
                result.probe,
                result.target,
                result.error.message,
            )
        self.shipper.notify(urgent=is_urgent(result))

    def start_metrics(self) -> None:
        m = self.cfg.metrics
        if m.port is None:
            return
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        registry.register(
            AgentCollector(
                self.book,
                lambda: self.spool.stats(time.time()),
                lambda: self.shipper.stats,
                lambda: dict(self.restarts),
            )
        )
        try:
            self.metrics_server = serve(registry, m.address, m.port)
        except OSError as exc:
            self.spool.close()
            raise ConfigError(
                f"metrics: cannot listen on {m.address}:{m.port}: {exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", m.address, m.port)

    async def _housekeeping(self) -> None:
        """Every minute: apply the spool bounds, and hand freed heap back to the OS (a voice
        stream or a call allocates and frees several MB; an idle agent should not keep it)."""
        while True:
            await asyncio.sleep(SPOOL_ENFORCE_EVERY_S)
            dropped = self.spool.enforce(time.time())
            if dropped:
                log.warning("spool bounds dropped %d old results", dropped)
            release_memory()

    async def supervise(self, name: str, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        await supervise(name, fn, self.restarts, self.rng)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then stop probes, flush the spool and close."""
        self.start_metrics()
        release_memory()  # what loading and validating the config left behind
        mods = ", ".join(f"{n}({m.probe})" for n, m in self.cfg.enabled_modules().items())
        log.info("agent %s started; modules: %s", self.creds.agent_id, mods or "none")
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "scheduler": self.scheduler.run,
            "shipper": self.shipper.run,
            "housekeeping": self._housekeeping,
        }
        if self.jobs is not None:
            loops["jobs"] = self.jobs.run
        if self.central is not None:
            loops["config"] = self.central.run
        if self.cfg.call_reports.port is not None:
            from agent.runtime.callreports import CallReportListener

            loops["call_reports"] = CallReportListener(self.cfg.call_reports, self.sink).run
        tasks = [
            asyncio.create_task(self.supervise(name, fn), name=name) for name, fn in loops.items()
        ]
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and not t.cancelled() and t.exception() is not None:
                    raise RuntimeError(f"{t.get_name()} stopped") from t.exception()
        finally:
            stopper.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shutdown()

    async def shutdown(self) -> None:
        flush = self.cfg.scheduler.shutdown_flush_s
        if flush > 0:
            empty = await self.shipper.flush(flush)
            left = self.spool.stats(time.time()).depth
            if not empty:
                log.warning(
                    "stopping with %d results in the spool; they ship on the next start", left
                )
        left = self.spool.stats(time.time()).depth
        await self.client.aclose()
        self.spool.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info(
            "agent stopped: %d results produced, %d acknowledged by the collector, %d in the spool",
            self.produced,
            self.shipper.stats.by_status.get("stored", 0)
            + self.shipper.stats.by_status.get("duplicate", 0),
            left,
        )
