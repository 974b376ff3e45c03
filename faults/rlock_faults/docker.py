"""The Docker engine through its CLI: containers and networks this run made, removed by id.

Every container and network is registered the moment `docker` prints its id, and removed by
that id at exit: normal end, an exception, SIGINT/SIGTERM (turned into SystemExit) and
`atexit`. Nothing is ever removed by name or by a filter.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
import threading
import uuid
from types import FrameType

_lock = threading.Lock()
_containers: list[str] = []
_networks: list[str] = []


class DockerError(RuntimeError):
    """A docker command failed; the message holds its arguments and stderr."""


def docker(*args: str, check: bool = True, timeout: float = 120.0) -> str:
    """Runs `docker args...`; returns stdout stripped. Raises DockerError when it fails."""
    try:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"docker {' '.join(args)}: timed out after {timeout} s") from e
    if check and done.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def container_logs(container_id: str) -> str:
    """Everything the container wrote to stdout and stderr, interleaved."""
    try:
        done = subprocess.run(
            ["docker", "logs", container_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "(docker logs timed out)"
    return done.stdout


def available() -> bool:
    """Whether a Docker engine answers `docker info`."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def unique(what: str) -> str:
    return f"rlock-faults-{what}-{uuid.uuid4().hex[:10]}"


def create_network(subnet_prefixes: list[str]) -> tuple[str, str]:
    """A bridge network of our own on the first free /24 of `subnet_prefixes` ("10.a.b").

    Returns (network id, prefix). Fixed subnets let a container keep its address across a
    disconnect or restart, which Sentinel and the cluster need (they know nodes by address).
    """
    for prefix in subnet_prefixes:
        name = unique("net")
        try:
            network_id = docker("network", "create", "--subnet", f"{prefix}.0/24", name)
        except DockerError:
            continue
        with _lock:
            _networks.append(network_id)
        return network_id, prefix
    raise DockerError("no free /24 for a network among the ones tried")


def create_container(args: list[str]) -> str:
    """`docker create args...`; registers and returns the container id."""
    container_id = docker("create", *args)
    with _lock:
        _containers.append(container_id)
    return container_id


def remove_all() -> None:
    """Removes every container, then every network, this run made (by id; idempotent)."""
    with _lock:
        containers, networks = list(_containers), list(_networks)
        _containers.clear()
        _networks.clear()
    for container_id in containers:
        with contextlib.suppress(DockerError):
            docker("rm", "-f", "-v", container_id, check=False, timeout=60)
    for network_id in networks:
        with contextlib.suppress(DockerError):
            docker("network", "rm", network_id, check=False, timeout=60)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Cleanup at exit and on SIGINT/SIGTERM (raised as SystemExit so `finally` blocks run)."""
    atexit.register(remove_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
