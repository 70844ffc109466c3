"""The rules of where ЮKassa notifications may come from: the networks, IPv6, proxies, and
the settings that configure them (pure functions, no app)."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from pydantic import ValidationError

from billing.checkout.trusted_networks import (
    YOOKASSA_NOTIFICATION_NETWORKS,
    check_notification_source,
    client_address,
    is_within,
    yookassa_networks,
)
from billing.config import Settings, describe_error, parse_networks

PROXIES = parse_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    "address",
    ["185.71.76.0", "185.71.76.31", "185.71.77.5", "77.75.153.127", "77.75.154.200",
     "77.75.156.11", "77.75.156.35", "2a02:5180::1", "2a02:5180:ffff::9", "::ffff:185.71.76.7"],
)  # fmt: skip
def test_yookassas_published_sources_are_trusted(address: str) -> None:
    assert is_within(ip_address(address), YOOKASSA_NOTIFICATION_NETWORKS)


@pytest.mark.parametrize(
    "address",
    ["185.71.76.32", "185.71.78.1", "77.75.153.128", "77.75.154.127", "77.75.156.12",
     "127.0.0.1", "10.1.2.3", "2a02:5181::1", "::1", "::ffff:8.8.8.8"],
)  # fmt: skip
def test_addresses_next_to_them_are_not(address: str) -> None:
    assert not is_within(ip_address(address), YOOKASSA_NOTIFICATION_NETWORKS)


def test_the_default_follows_the_api_address() -> None:
    assert yookassa_networks(None, "https://api.yookassa.ru/v3") == YOOKASSA_NOTIFICATION_NETWORKS
    assert yookassa_networks(None, "http://127.0.0.1:8000/sandbox/v3") is None
    assert yookassa_networks(None, "https://yookassa.example/v3") is None
    # Only the host counts: a look-alike path or user part does not make it ЮKassa's.
    assert yookassa_networks(None, "https://evil.example/api.yookassa.ru/v3") is None
    configured = parse_networks("192.0.2.0/24")
    assert yookassa_networks(configured, "http://127.0.0.1:8000/sandbox/v3") == configured
    assert yookassa_networks(configured, "https://api.yookassa.ru/v3") == configured


def test_without_a_trusted_proxy_the_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address("203.0.113.9", ["185.71.76.1"], ()) == ip_address("203.0.113.9")
    assert client_address("10.0.0.2", ["185.71.76.1"], ()) == ip_address("10.0.0.2")


def test_behind_a_trusted_proxy_the_client_is_the_address_it_saw() -> None:
    assert client_address("10.0.0.2", ["185.71.76.1"], PROXIES) == ip_address("185.71.76.1")
    assert client_address("fd00::2", ["2a02:5180::7"], PROXIES) == ip_address("2a02:5180::7")


def test_a_forged_entry_left_of_the_proxy_s_own_is_not_believed() -> None:
    # The viewer sent "X-Forwarded-For: 185.71.76.1"; the proxy appended the real peer.
    assert client_address("10.0.0.2", ["185.71.76.1, 198.51.100.4"], PROXIES) == ip_address(
        "198.51.100.4"
    )


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    forwarded = ["198.51.100.4, 185.71.77.3", "10.0.0.7"]  # two headers count as one list
    assert client_address("10.0.0.2", forwarded, PROXIES) == ip_address("185.71.77.3")


def test_ports_and_brackets_are_taken_off() -> None:
    assert client_address("10.0.0.2", ["185.71.76.1:4431"], PROXIES) == ip_address("185.71.76.1")
    assert client_address("10.0.0.2", ["[2a02:5180::7]:443"], PROXIES) == ip_address("2a02:5180::7")


@pytest.mark.parametrize("forwarded", ["unknown", "", "185.71.76.1, garbage", "_hidden"])
def test_an_entry_that_is_no_address_is_never_believed(forwarded: str) -> None:
    assert client_address("10.0.0.2", [forwarded], PROXIES) is None
    assert not check_notification_source(
        "yookassa", "10.0.0.2", [forwarded],
        yookassa=YOOKASSA_NOTIFICATION_NETWORKS, trusted_proxies=PROXIES,
    )  # fmt: skip


def test_the_check_applies_to_yookassa_only_and_only_when_networks_are_set() -> None:
    def allowed(provider: str, peer: str | None, networks: object) -> bool:
        return check_notification_source(
            provider,
            peer,
            [],
            yookassa=networks,
            trusted_proxies=(),  # type: ignore[arg-type]
        )

    assert allowed("yookassa", "185.71.76.4", YOOKASSA_NOTIFICATION_NETWORKS)
    assert not allowed("yookassa", "203.0.113.9", YOOKASSA_NOTIFICATION_NETWORKS)
    assert not allowed("yookassa", None, YOOKASSA_NOTIFICATION_NETWORKS)
    assert not allowed("yookassa", "testclient", YOOKASSA_NOTIFICATION_NETWORKS)
    assert allowed("yookassa", "203.0.113.9", None)  # the sandbox: anywhere
    assert allowed("stripe", "203.0.113.9", YOOKASSA_NOTIFICATION_NETWORKS)  # signed instead


def test_the_settings_read_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BILLING_YOOKASSA_TRUSTED_NETWORKS", "192.0.2.0/24 , 2001:db8::/32,198.51.100.7"
    )
    monkeypatch.setenv("BILLING_TRUSTED_PROXIES", "10.0.0.0/8")

    settings = Settings()

    assert settings.yookassa_trusted_networks == (
        ip_network("192.0.2.0/24"), ip_network("2001:db8::/32"), ip_network("198.51.100.7/32"),
    )  # fmt: skip
    assert settings.trusted_proxies == (ip_network("10.0.0.0/8"),)


def test_unset_or_empty_settings_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_YOOKASSA_TRUSTED_NETWORKS", "")
    monkeypatch.delenv("BILLING_TRUSTED_PROXIES", raising=False)

    settings = Settings()

    assert settings.yookassa_trusted_networks is None
    assert settings.trusted_proxies is None


@pytest.mark.parametrize(
    ("variable", "value", "bad"),
    [
        ("BILLING_YOOKASSA_TRUSTED_NETWORKS", "185.71.76.0/27, 300.1.1.1/8", "300.1.1.1/8"),
        ("BILLING_YOOKASSA_TRUSTED_NETWORKS", "185.71.76.0/27,", ""),
        ("BILLING_TRUSTED_PROXIES", "10.0.0.1/8", "10.0.0.1/8"),  # host bits set: a typo
        ("BILLING_TRUSTED_PROXIES", "nginx", "nginx"),
    ],
)
def test_a_bad_cidr_is_a_one_line_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, bad: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as error:
        Settings()

    assert describe_error(error.value) == f"{variable}: {bad!r} is not a CIDR network"
