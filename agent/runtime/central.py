"""Central config: fetch the effective config from the collector every `central.interval_s`
(with its ETag: an unchanged config is a 304 and nothing is downloaded), validate it with
the model of the local file, hand it to the scheduler without a restart, and report the
config version running and the software version to the collector.

What runs: when the collector has a profile for the agent's partner, customer or site, its
modules replace the local schedule, except the modules the local file names itself
(`modules:`), which are pinned and win by name. Without any profile the local schedule
(the file's modules, or the defaults) runs. A config the agent cannot run (an option its
probe refuses, a `$responder` target on a site without a responder) is refused as a whole:
the running one stays and the reason is reported.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random

from agent import __version__
from agent.errors import ConfigError
from agent.runtime.client import AuthError, CollectorClient, CollectorError
from agent.runtime.config import AgentConfig, resolve_modules
from agent.runtime.scheduler import Scheduler
from agent.runtime.shipper import backoff_delay
from agent.wire.lite import ConfigReport, EffectiveConfig, ModuleConfig

log = logging.getLogger(__name__)

LOCAL = "local"  # the config version reported while the local schedule runs


class ConfigSync:
    def __init__(
        self,
        client: CollectorClient,
        scheduler: Scheduler,
        cfg: AgentConfig,
        *,
        rng: random.Random | None = None,
        check_probes: bool = True,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.site = cfg.site
        self.interval_s = cfg.central.interval_s
        self.local = dict(cfg.modules or {})
        self.pinned = cfg.pinned
        self.rng = rng or random.Random()
        self.check_probes = check_probes
        self.etag: str | None = None
        self.version = LOCAL
        self.error: str | None = None
        self.applied = 0
        self._reported: ConfigReport | None = None

    def modules_for(self, central: EffectiveConfig) -> dict[str, ModuleConfig]:
        """The modules to run for this answer; ConfigError names the key it cannot run."""
        if not central.central:
            return dict(self.local)
        mods = {n: copy.deepcopy(m) for n, m in central.modules.items()}
        resolve_modules(mods, self.site, "collector config", check_probes=self.check_probes)
        return {**mods, **self.pinned}

    async def sync_once(self) -> bool:
        """One fetch; True when a new config was applied."""
        got = await self.client.get_config(self.etag)
        changed = False
        if got is not None:
            self.etag = got.version
            try:
                modules = self.modules_for(got)
            except ConfigError as exc:
                self.error = exc.message
                log.error("config %s from the collector refused: %s", got.version, exc.message)
            else:
                self.error = None
                self.version = got.version if got.central else LOCAL
                self.scheduler.apply({n: m for n, m in modules.items() if m.enabled})
                self.applied += 1
                changed = True
                names = ", ".join(f"{n}({m.probe})" for n, m in modules.items() if m.enabled)
                log.warning("config %s applied; modules: %s", self.version, names or "none")
        report = ConfigReport(
            config_version=self.version, software_version=__version__, error=self.error
        )
        if report != self._reported:
            await self.client.report_config(report)
            self._reported = report
        return changed

    async def run(self) -> None:
        """Fetch every `interval_s` (randomised by 10 % so a fleet does not synchronise)."""
        failures = 0
        while True:
            try:
                await self.sync_once()
                failures = 0
                delay = self.interval_s * self.rng.uniform(0.9, 1.1)
            except CollectorError as exc:
                failures += 1
                if failures in (1, 5) or failures % 50 == 0:
                    log.warning("config fetch failed (%d in a row): %s", failures, exc)
                delay = (
                    300.0
                    if isinstance(exc, AuthError)
                    else min(self.interval_s, backoff_delay(failures - 1, 1.0, 60.0, self.rng))
                )
            await asyncio.sleep(delay)
