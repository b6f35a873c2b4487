"""autoqwen.addresses: which hosts and addresses a skill may reach, in every spelling an attacker might try."""

from __future__ import annotations

import socket
import time
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest

from autoqwen.addresses import AddressRefused, AllowList, check_host, parse_ip, resolve


@pytest.fixture(autouse=True)
def _nothing_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOQWEN_ALLOW_HOSTS", "")


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]], delay: float = 0.0) -> list[str]:
    """Make socket.getaddrinfo answer from `table`; returns the list of names looked up."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        time.sleep(delay)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, f"unknown name {host}")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.100.100.200", "shared"),  # Alibaba Cloud's metadata service
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("::ffff:7f00:1", "loopback"),
        ("fd00:ec2::254", "private"),  # AWS's IPv6 metadata address
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("2852039166", "link-local"),  # 169.254.169.254 as one decimal number
        ("0xa9fea9fe", "link-local"),
        ("0xa9.0xfe.0xa9.0xfe", "link-local"),
        ("0251.0376.0251.0376", "link-local"),  # octal
        ("0x7f.1", "loopback"),
        ("127.1", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("127.0.0.1.", "loopback"),
    ],
)
def test_internal_addresses_are_refused_in_every_spelling(host: str, kind: str) -> None:
    with pytest.raises(AddressRefused, match=kind) as refused:
        check_host(host)
    assert "AUTOQWEN_ALLOW_HOSTS" in str(refused.value) and refused.value.host == host


@pytest.mark.parametrize(
    "host",
    [
        "metadata.google.internal",
        "METADATA.Google.Internal.",
        "metadata",
        "metadata.goog",
        "instance-data",
        "intranet",
        "printer.local",
        "app.localhost",
        "localhost",
        "db.corp.internal",
        "nas.home.arpa",
    ],
)
def test_local_and_metadata_names_are_refused_without_dns(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    asked = fake_dns(monkeypatch, {})
    with pytest.raises(AddressRefused, match="public hosts"):
        resolve(host, 80)
    assert asked == []


@pytest.mark.parametrize("host", ["1.2.3.256", "1.2.3.4.5", "0x1.0x100.1.1", "09.1.1.1", "example.0x", "[::g]"])
def test_malformed_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(AddressRefused, match="not a valid"):
        check_host(host)


def test_numeric_spellings_are_read_as_a_browser_reads_them() -> None:
    assert parse_ip("2852039166") == IPv4Address("169.254.169.254")
    assert parse_ip("0x7f.1") == parse_ip("127.1") == parse_ip("0177.0.0.01") == IPv4Address("127.0.0.1")
    assert parse_ip("10.0x10203") == IPv4Address("10.1.2.3")
    assert parse_ip("[2001:db8::1]") == IPv6Address("2001:db8::1")
    assert parse_ip("example.org") is None and parse_ip("v1.example") is None


@pytest.mark.parametrize("host", ["example.org", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::8.8.8.8", "1.1"])
def test_public_hosts_pass(host: str) -> None:
    ip = check_host(host)
    assert ip is None or ip.is_global


def test_a_name_is_resolved_once_and_every_address_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(
        monkeypatch,
        {"good.example": ["93.184.216.34"], "evil.example": ["127.0.0.2"], "mixed.example": ["8.8.8.8", "10.1.1.1"]},
    )
    assert resolve("good.example", 443) == [ip_address("93.184.216.34")]
    with pytest.raises(AddressRefused, match=r"evil\.example resolves to 127\.0\.0\.2, a loopback address"):
        resolve("evil.example", 80)
    with pytest.raises(AddressRefused, match=r"10\.1\.1\.1"):  # one internal answer refuses the name
        resolve("mixed.example", 80)
    assert asked == ["good.example", "evil.example", "mixed.example"]


def test_a_slow_lookup_ends_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"slow.example": ["8.8.8.8"]}, delay=3.0)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"slow\.example"):
        resolve("slow.example", 80, timeout=0.2)
    assert time.monotonic() - start < 1.0


def test_the_allow_list_opens_networks_addresses_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOQWEN_ALLOW_HOSTS", " 127.0.0.1, 10.0.0.0/8 ,wiki.corp.internal,[::1]")
    asked = fake_dns(monkeypatch, {"wiki.corp.internal": ["10.9.9.9", "192.168.0.9"], "evil.example": ["127.0.0.2"]})
    assert check_host("127.0.0.1") == check_host("0x7f.1") == IPv4Address("127.0.0.1")
    assert check_host("10.200.0.1") and check_host("::ffff:10.0.0.1") and check_host("[::1]")
    assert resolve("wiki.corp.internal", 80) == [ip_address("10.9.9.9"), ip_address("192.168.0.9")]  # a listed name
    for still_refused in ("127.0.0.2", "192.168.0.9", "metadata.google.internal"):
        with pytest.raises(AddressRefused):
            check_host(still_refused)
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.2"):
        resolve("evil.example", 80)
    assert asked == ["wiki.corp.internal", "evil.example"]


@pytest.mark.parametrize("entry", ["not a host", "10.0.0.0/33", "http://x/"])
def test_a_bad_allow_list_entry_is_a_clear_error(entry: str) -> None:
    with pytest.raises(ValueError, match=f"AUTOQWEN_ALLOW_HOSTS: {entry!r} is not a host name"):
        AllowList.parse(f"127.0.0.1,{entry}")
