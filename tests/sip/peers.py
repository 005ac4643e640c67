"""Real SIP peers for the tests: Kamailio, SIPp and baresip run in the foreground on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).parent


def free_port(kind: int = socket.SOCK_DGRAM, also_tcp: bool = True) -> int:
    """A loopback port free for UDP (and TCP when `also_tcp`), from tests/ports.py."""
    from tests.ports import free_port as pick

    return pick(kind, socket.SOCK_STREAM) if also_tcp else pick(kind)


def free_rtp_port() -> int:
    """An even UDP port whose successor (RTCP) is free too."""
    for _ in range(100):
        p = free_port(also_tcp=False)
        p -= p % 2
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free RTP port pair on loopback")


def missing(binary: str) -> str | None:
    return None if shutil.which(binary) else f"{binary} is not installed"


def _wait_udp_answer(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until something answers an OPTIONS on the port (or the process dies)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        me = s.getsockname()[1]
        msg = (
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKp;rport\r\n"
            "From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ping\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"peer exited early with status {proc.returncode}")
            s.sendto(msg, ("127.0.0.1", port))
            try:
                s.recvfrom(4096)
                return
            except TimeoutError:
                continue
    raise RuntimeError(f"nothing answered on UDP port {port} within {timeout} s")


def _wait_bound(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until the peer has bound UDP 127.0.0.1:port (without sending it anything)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited early with status {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing bound UDP port {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def kamailio(password: str, *, uas: str = "127.0.0.1:9", algorithm: str = "MD5") -> Iterator[int]:
    """Kamailio as registrar/proxy on a loopback port (UDP and TCP); yields the port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kam") as tmp:
        cfg = (HERE / "kamailio.cfg").read_text()
        for key, value in {
            "PORT": str(port),
            "PASSWORD": password,
            "UAS": uas,
            "ALGORITHM": algorithm,
        }.items():
            cfg = cfg.replace(f"@@{key}@@", value)
        path = Path(tmp) / "kamailio.cfg"
        path.write_text(cfg)
        log = open(Path(tmp) / "log", "wb")
        argv = [
            "kamailio",
            "-f",
            str(path),
            "-DD",
            "-E",
            "-m",
            "64",
            "-M",
            "8",
            "-P",
            f"{tmp}/pid",
            "-Y",
            tmp,
            "-w",
            tmp,
        ]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        try:
            try:
                _wait_udp_answer(port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{(Path(tmp) / 'log').read_text()[-3000:]}") from None
            yield port
        finally:
            stop(proc)
            log.close()


@contextlib.contextmanager
def sipp_uas_echo(calls: int = 1) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """SIPp's built-in UAS scenario with RTP echo on loopback; yields (SIP port, process, dir)."""
    port = free_port()
    media = free_rtp_port()
    with tempfile.TemporaryDirectory(prefix="sipp") as tmp:
        argv = ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
                "-mp", str(media), "-rtp_echo", "-m", str(calls), "-nostdin",
                "-trace_err", "-error_file", f"{tmp}/errors.log", "-trace_stat",
                "-stf", f"{tmp}/stat.csv"]  # fmt: skip
        log = open(Path(tmp) / "out.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=tmp)  # fmt: skip
        try:
            _wait_bound(port, proc)
            yield port, proc, Path(tmp)
        finally:
            stop(proc)
            log.close()


def run_sipp_uac(target_port: int, calls: int = 1, timeout: float = 60.0) -> tuple[int, str]:
    """SIPp's built-in UAC scenario against 127.0.0.1:target_port; (exit status, output)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sippc") as tmp:
        argv = ["sipp", "-sn", "uac", f"127.0.0.1:{target_port}", "-s", "echo",
                "-i", "127.0.0.1", "-p", str(port), "-m", str(calls), "-r", "10",
                "-d", "1000", "-nostdin", "-timeout", f"{int(timeout)}s",
                "-trace_err", "-error_file", f"{tmp}/errors.log"]  # fmt: skip
        res = subprocess.run(argv, capture_output=True, timeout=timeout + 15, cwd=tmp,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        errors = Path(tmp, "errors.log")
        text = res.stdout.decode(errors="replace")[-1500:]
        if errors.exists():
            text += "\n" + errors.read_text()[-3000:]
        return res.returncode, text


BARESIP_CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{port}
audio_player aubridge,nil
audio_source ausine,440
audio_alert aubridge,nil
ausrc_srate 48000
ausrc_channels 2
rtp_ports {rtp}-{rtp_end}
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module opus.so
module ausine.so
module aubridge.so
module_app account.so
module_app menu.so
"""


@contextlib.contextmanager
def baresip(user: str = "bob") -> Iterator[tuple[int, Path]]:
    """baresip auto-answering on loopback (a 440 Hz tone as its microphone); yields
    (SIP port, log file)."""
    port = free_port()
    rtp = free_rtp_port()
    with tempfile.TemporaryDirectory(prefix="baresip") as tmp:
        Path(tmp, "config").write_text(BARESIP_CONFIG.format(port=port, rtp=rtp, rtp_end=rtp + 9))
        Path(tmp, "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{port}>;regint=0;answermode=auto\n"
        )
        logpath = Path(tmp, "out.log")
        log = open(logpath, "wb")
        proc = subprocess.Popen(["baresip", "-f", tmp], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            _wait_bound(port, proc)
            deadline = time.monotonic() + 10
            while b"baresip is ready" not in logpath.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not start:\n{logpath.read_text()[-2000:]}")
                time.sleep(0.05)
            yield port, logpath
        finally:
            stop(proc)
            log.close()
