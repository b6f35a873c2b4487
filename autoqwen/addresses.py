"""Which network addresses a skill may reach: the one module that says so, for every layer.

check_host("metadata.google.internal")   # AddressRefused: no DNS, just the name or the literal IP (any notation)
resolve("example.org", 443)              # the addresses to connect to, each checked; AddressRefused if any is not
check_ip(ip_address("10.0.0.1"))         # AddressRefused: private

Everything that is not a global unicast address is refused (loopback, private, link-local and so cloud metadata,
shared/CGNAT, multicast, reserved), IPv4 addresses inside IPv6 ones (mapped, 6to4, NAT64) are judged as IPv4, and
numeric IPv4 spellings (`2852039166`, `0x7f.1`, `0177.0.0.1`) are read as a browser reads them. Names that only
mean something inside a network (single labels, `.internal`, `.local`, `.localhost`, `.home.arpa`, metadata
names) are refused before any lookup. `AUTOQWEN_ALLOW_HOSTS` opens exceptions: a comma-separated list of host
names (reachable whatever they resolve to), IP addresses and CIDR networks, e.g. `127.0.0.1,10.1.0.0/16,wiki.lan`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOW_HOSTS_ENV",
    "AddressRefused",
    "AllowList",
    "IPAddress",
    "allow_list",
    "check_host",
    "check_ip",
    "parse_ip",
    "resolve",
]

ALLOW_HOSTS_ENV = "AUTOQWEN_ALLOW_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance-metadata services by name (their addresses are link-local or shared, refused anyway).
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
# Special-use suffixes that never name a public web site (RFC 6761, RFC 6762, RFC 8375, ICANN's .internal).
_PRIVATE_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "localdomain")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# The last label of a host "ends in a number" (WHATWG URL): the host is an IPv4 address in some notation.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*", re.IGNORECASE)


class AddressRefused(ValueError):
    """A host or address a skill may not reach (internal, metadata, malformed); the message says which and why."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


@dataclass(frozen=True)
class AllowList:
    """Explicit exceptions to the rules: `AllowList.parse("127.0.0.1,10.0.0.0/8,wiki.lan")`."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Read a comma-separated list of host names, IP addresses and CIDR networks; a bad entry is a ValueError."""
        hosts: set[str] = set()
        networks: list[_Network] = []
        for raw in text.split(","):
            entry = raw.strip().lower().strip("[]").rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or not _NAME.fullmatch(entry):
                raise ValueError(f"{ALLOW_HOSTS_ENV}: {raw.strip()!r} is not a host name, IP address or CIDR network")
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Whether the host name is listed (names are compared without case and trailing dot)."""
        return _normal(host) in self.hosts

    def allows_ip(self, ip: IPAddress) -> bool:
        """Whether the address, or the IPv4 address inside an IPv4-mapped one, is in a listed network."""
        candidates = [ip] + ([ip.ipv4_mapped] if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else [])
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


def allow_list() -> AllowList:
    """The exceptions in `AUTOQWEN_ALLOW_HOSTS` (read at each call, so a test or a session may change it)."""
    return _parse_allow_list(os.environ.get(ALLOW_HOSTS_ENV, ""))


@functools.lru_cache(maxsize=8)
def _parse_allow_list(text: str) -> AllowList:
    return AllowList.parse(text)


def parse_ip(host: str) -> IPAddress | None:
    """The address a URL host spells (IPv6 with or without brackets, IPv4 in any notation), None for a name.

    A host that ends in a number but is no valid IPv4 address (`1.2.3.999`) is an AddressRefused.
    """
    text = host.strip().strip("[]") if host.startswith("[") else host.strip()
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise AddressRefused(f"{host!r} is not a valid IPv6 address", host=host) from None
    labels = text.rstrip(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    try:
        return _ipv4(labels)
    except ValueError:
        raise AddressRefused(f"{host!r} is not a valid IPv4 address", host=host) from None


def _ipv4(labels: list[str]) -> ipaddress.IPv4Address:
    """WHATWG's IPv4 parser: 1 to 4 parts, each decimal, 0x-hex or 0-octal; the last part fills the rest."""
    if len(labels) > 4:
        raise ValueError("too many parts")
    numbers = [_ipv4_number(label) for label in labels]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise ValueError("a part is out of range")
    value = numbers[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(numbers[:-1]))
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label[1:], 8)
    return int(label, 10)


def check_ip(
    ip: IPAddress, *, host: str | None = None, resolved: bool = False, allowed: AllowList | None = None
) -> None:
    """Refuse an address that is not global unicast (AddressRefused), unless the allow-list has it.

    `host` is the name or spelling it came from (`resolved` when DNS gave it), for the message.
    """
    allowed = allow_list() if allowed is None else allowed
    if allowed.allows_ip(ip):
        return
    kind = _internal_kind(ip)
    if kind is None:
        return
    if host and resolved:
        what = f"{host} resolves to {ip}, a {kind} address"
    elif host and _normal(host) != str(ip):
        what = f"{host} is {ip}, a {kind} address"
    else:
        what = f"{ip} is a {kind} address"
    raise AddressRefused(
        f"{what}; web skills reach only public addresses (set {ALLOW_HOSTS_ENV} to allow it)", host=host or str(ip)
    )


def _internal_kind(ip: IPAddress) -> str | None:
    """What makes an address internal ("loopback", "private", ...), or None for a global unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _internal_kind(ip.ipv4_mapped)
        for prefix in _NAT64:
            if ip in prefix:  # DNS64 gives every IPv4-only site such an address: judge the IPv4 one inside
                return _internal_kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (inner := _internal_kind(ip.sixtofour)):
            return inner
        if ip.teredo is not None or ip.is_site_local:
            return "tunnelled or site-local"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata)"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT)"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "non-public"),
    )
    return next((kind for hit, kind in checks if hit), None)


def check_host(host: str, *, allowed: AllowList | None = None) -> IPAddress | None:
    """Refuse what a URL host says by itself, without DNS: internal IP literals and local or metadata names.

    Returns the address when the host is an IP literal, else None (a name still to be resolved and checked).
    """
    allowed = allow_list() if allowed is None else allowed
    if not host.strip():
        raise AddressRefused("the URL has no host name", host=host)
    if allowed.allows_host(host):
        return parse_ip(host)
    ip = parse_ip(host)
    if ip is not None:
        check_ip(ip, host=host, allowed=allowed)
        return ip
    name = _normal(host)
    if name in _METADATA_NAMES:
        reason = "a cloud metadata service"
    elif "." not in name:
        reason = "a single-label name (a local network name)"
    elif name.endswith(tuple("." + s for s in _PRIVATE_SUFFIXES)) or name in _PRIVATE_SUFFIXES:
        reason = "a name for local or internal networks only"
    else:
        return None
    raise AddressRefused(
        f"{host} is {reason}; web skills reach only public hosts (set {ALLOW_HOSTS_ENV} to allow it)",
        host=host,
    )


def resolve(host: str, port: int, *, timeout: float | None = None) -> list[IPAddress]:
    """The addresses to connect to for `host`, looked up once and each checked (any refused one refuses them all).

    `timeout` bounds the lookup (the system resolver has none of its own); past it the lookup is an OSError.
    """
    allowed = allow_list()
    literal = check_host(host, allowed=allowed)
    if literal is not None:
        return [literal]
    infos = _getaddrinfo(host, port, timeout)
    found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
    if not found:
        raise OSError(f"{host} has no address")
    if not allowed.allows_host(host):
        for ip in found:
            check_ip(ip, host=host, resolved=True, allowed=allowed)
    return found


def _getaddrinfo(host: str, port: int, timeout: float | None) -> list[tuple[Any, ...]]:
    """socket.getaddrinfo with a time limit: the lookup runs in a daemon thread that is abandoned past it."""
    result: list[object] = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller's thread
            result.append(exc)

    if timeout is None:
        lookup()
    else:
        worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
        worker.start()
        worker.join(max(timeout, 0.0))
        if not result:
            raise TimeoutError(f"looking up {host} took longer than {timeout:g} s")
    outcome = result[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome  # type: ignore[return-value]


def _normal(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
