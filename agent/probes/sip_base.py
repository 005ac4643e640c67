"""The SIP options of the probes that run on demand (REGISTER, calls) as a pydantic model
(their own options extend it with validators); `sip_options`, on the idle agent's schedule,
takes the same keys as the msgspec Struct `sip_common.SipTransportOptions`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.probes.sip_common import name_server


class SipOptionsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls_verify: bool = Field(default=True, description="check the server's TLS certificate")
    user: str | None = Field(default=None, max_length=128, description="auth / From user")
    password: str | None = Field(default=None, max_length=256)
    dns_server: str | None = Field(
        default=None,
        description="name server for the SRV/A lookups of the SIP domain, HOST or HOST:PORT "
        "([V6]:PORT); None: the system's",
    )

    @field_validator("dns_server")
    @classmethod
    def _dns_server(cls, v: str | None) -> str | None:
        if v is not None:
            name_server(v)
        return v
