"""Measurements of the network probes: icmp, trace, mtu, dns, bandwidth, host, nat_binding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent.wire.exposition import Gauge, Labels, Stats
from agent.wire.stats import SummaryStats


class IcmpMeasurement(BaseModel):
    address: str
    sent: int
    received: int
    loss_pct: Annotated[float, Gauge("loss_pct", direction="rtt")]
    rtt_ms: Annotated[SummaryStats, Stats("rtt_ms")]
    jitter_ms: Annotated[float | None, Gauge("jitter_ms", direction="rtt")] = Field(
        description="mean |RTT_i - RTT_{i-1}| over received replies"
    )
    jitter_rfc3550_ms: float | None = Field(description="RFC 3550 estimator over the RTT series")
    unreachable: int = Field(description="ICMP errors received instead of echo replies")
    send_errors: int = Field(description="requests the local host refused to send")
    rtts_ms: list[float | None] = Field(description="per request, None where no reply came")
    dscp: int
    privileged: bool


class MtuMeasurement(BaseModel):
    address: str
    path_mtu: Annotated[int | None, Gauge("path_mtu_bytes")] = Field(
        description="largest IP packet with DF that got an echo reply"
    )
    local_mtu: int
    frag_needed_mtu: int | None = Field(description="next-hop MTU named by an ICMP error")
    frag_needed_from: str | None
    pmtu_blackhole: bool = Field(description="too-big packets dropped with no ICMP error")
    probes_sent: int
    sizes: dict[str, str] = Field(description="size -> fits / too big / frag-needed")


class Hop(BaseModel):
    ttl: int
    address: str | None
    other_addresses: list[str]
    sent: int
    received: int
    loss_pct: float
    rtt_ms: dict[str, float | None]
    is_destination: bool


class TraceMeasurement(BaseModel):
    address: str
    mode: str
    rounds: int
    reached: bool
    hops: list[Hop]
    hop_count: Annotated[int, Gauge("trace_hops")]
    loss_starts_at_hop: Annotated[int | None, Gauge("trace_loss_start_hop")] = Field(
        description="first hop of persistent loss, if any"
    )
    destination_loss_pct: Annotated[float | None, Gauge("trace_destination_loss_pct")]


class DnsQuery(BaseModel):
    name: str
    type: str
    rcode: str
    answers: list[str]
    ttl: int | None
    time_ms: float


class SipServer(BaseModel):
    transport: str
    host: str
    port: int
    priority: int | None
    weight: int | None
    addresses: list[str]
    via: Literal["naptr", "srv", "a"]


class DnsMeasurement(BaseModel):
    server: str
    name: str
    queries: list[DnsQuery]
    resolution_ms: Annotated[float, Gauge("dns_resolution_ms")] = Field(
        description="sum of the query times"
    )
    sip_servers: list[SipServer] | None = None


class TcpResult(BaseModel):
    direction: str
    streams: int
    bytes: int
    duration_s: float
    throughput_bps: Annotated[float, Gauge("throughput_bps")]
    per_stream_bps: list[float]
    retransmits: int | None
    rtt_loaded_ms: float | None
    buffer_delay_pct: Annotated[float | None, Gauge("buffer_delay_pct")]


class UdpRateResult(BaseModel):
    direction: str
    target_kbps: float
    packet_bytes: int
    sent: int
    send_kbps: float
    received: int
    lost: int
    loss_pct: float
    duplicates: int
    reordered: int
    jitter_ms: float
    receive_kbps: float | None


class BandwidthMeasurement(BaseModel):
    address: str
    port: int
    mode: str
    idle_rtt_ms: float | None
    upload: Annotated[TcpResult | None, Labels(direction="up")] = None
    download: Annotated[TcpResult | None, Labels(direction="down")] = None
    udp_up: UdpRateResult | None = None
    udp_down: UdpRateResult | None = None


class Nic(BaseModel):
    name: str
    is_up: bool
    speed_mbps: int | None
    mtu: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_drops: int
    tx_drops: int


class Gateway(BaseModel):
    address: str
    interface: str
    mac: str | None
    vendor: str | None


class HostMeasurement(BaseModel):
    hostname: str
    cpu_count: int
    cpu_pct: Annotated[float, Gauge("host_cpu_pct")]
    load_1: float
    load_5: float
    load_15: float
    memory_total_bytes: int
    memory_available_bytes: int
    memory_used_pct: Annotated[float, Gauge("host_memory_used_pct")]
    swap_used_pct: float
    uptime_s: float
    interfaces: list[Nic]
    gateway: Gateway | None
    public_address: str | None


class IntervalResult(BaseModel):
    interval_s: float
    survived: bool | None = Field(description="None: the service never acknowledged")


class NatBindingMeasurement(BaseModel):
    address: str
    port: int
    local_address: str
    mapped_address: str | None
    behind_nat: bool | None
    intervals_s: list[float]
    results: list[IntervalResult]
    survived_s: Annotated[float | None, Gauge("nat_binding_survived_seconds")] = Field(
        description="longest idle time the mapping survived"
    )
    lost_s: float | None = Field(description="shortest idle time after which it was gone")
