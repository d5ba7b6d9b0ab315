"""Storage core: locators, the local plugin and the fetch policy, good and bad paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cpchain.crypto import sha256_file
from cpchain.storage import (
    FetchPolicy,
    LocalStorage,
    Locator,
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    TransferTooLarge,
)
from tests.storage.helpers import make_file


@pytest.mark.parametrize("size", [0, 1, 1 << 20, 3 * (1 << 20) + 7])
def test_local_round_trip_keeps_every_byte(tmp_path: Path, size: int) -> None:
    store = LocalStorage(tmp_path / "store")
    source = tmp_path / "cipher.bin"
    expected = make_file(source, size)
    seen: list[int] = []
    locator = store.upload(source, progress=seen.append)
    assert Locator.from_json(locator.to_json()) == locator
    assert (seen[-1] if seen else 0) == size
    out = tmp_path / "out" / "copy.bin"
    store.download(locator, out)
    assert sha256_file(out) == expected


def test_uploading_the_same_ciphertext_twice_stores_it_once(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    source = tmp_path / "c.bin"
    make_file(source, 1000)
    assert store.upload(source) == store.upload(source)
    assert len(list((tmp_path / "store").iterdir())) == 1


def test_local_paths_outside_the_roots_are_refused(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    secret = tmp_path / "secret.txt"
    secret.write_text("private key")
    (tmp_path / "store").mkdir()
    link = tmp_path / "store" / "link.bin"
    link.symlink_to(secret)
    for path in (str(secret), str(tmp_path / "store" / ".." / "secret.txt"), str(link), "/etc/passwd"):
        with pytest.raises(PolicyRefused, match="outside the allowed directories"):
            store.download(Locator("local", {"path": path}), tmp_path / "x")
    with pytest.raises(PolicyRefused, match="must be absolute"):
        store.download(Locator("local", {"path": "secret.txt"}), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_missing_object_and_size_limit_leave_no_file(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    (tmp_path / "store").mkdir()
    with pytest.raises(ObjectMissing):
        store.download(Locator("local", {"path": str(tmp_path / "store" / "gone.bin")}), tmp_path / "out.bin")
    source = tmp_path / "big.bin"
    make_file(source, 3 << 20)
    locator = store.upload(source)
    with pytest.raises(TransferTooLarge):
        store.download(locator, tmp_path / "out.bin", max_bytes=1 << 20)
    assert list(tmp_path.glob("out.bin*")) == [] and list(tmp_path.glob(".out.bin*")) == []


def test_an_interrupted_download_keeps_the_previous_file_intact(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    source = tmp_path / "c.bin"
    make_file(source, 2 << 20)
    locator = store.upload(source)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"previous, complete file")

    def stop(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.download(locator, dest, progress=stop)
    assert dest.read_bytes() == b"previous, complete file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"path": "/x"}', 'needs a "type"'),
        ('{"type": "os.system", "path": "/x"}', "unknown storage type 'os.system'"),
        ('{"type": "local"}', "missing ['path']"),
        ('{"type": "local", "path": "/x", "host": "evil"}', "unexpected ['host']"),
        ('{"type": "local", "path": 7}', "field 'path' must be str"),
        ('{"type": "local", "path": "' + "a" * 5000 + '"}', "longer than 4096"),
        ("[" * 4000, "not valid JSON"),
        ("[" * 100000, "longer than 4096"),
    ],
)
def test_malformed_locators_are_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(LocatorError) as info:
        Locator.from_json(text)
    assert message in str(info.value)


def fake_dns(table: dict[str, list[str]]) -> Callable[[str], list[str]]:
    """A resolver with fixed answers, so address checks need no network."""

    def resolve(host: str) -> list[str]:
        return table.get(host, [])

    return resolve


def test_policy_refuses_internal_addresses_unless_allowed() -> None:
    dns = fake_dns(
        {
            "example.org": ["93.184.215.14"],
            "localhost": ["127.0.0.1", "::1"],
            "intranet": ["10.1.2.3"],
            "sneaky": ["93.184.215.14", "192.168.1.1"],
            "mapped": ["::ffff:127.0.0.1"],
            "linklocal": ["169.254.169.254"],
        }
    )
    policy = FetchPolicy.of(["local"], 1 << 20, resolver=dns)
    assert policy.check_host("example.org") == ["93.184.215.14"]
    for host in ("localhost", "intranet", "sneaky", "mapped", "linklocal"):
        with pytest.raises(PolicyRefused, match="internal address"):
            policy.check_host(host)
    with pytest.raises(PolicyRefused, match="no address"):
        policy.check_host("nowhere")
    relaxed = FetchPolicy.of(["local"], 1 << 20, allow_internal=True, resolver=dns)
    assert relaxed.check_host("localhost") == ["127.0.0.1", "::1"]


def test_policy_allow_list_types_and_size() -> None:
    dns = fake_dns({"ipfs.example": ["93.184.215.14"], "other.example": ["93.184.215.15"]})
    policy = FetchPolicy.of(["local"], 100, hosts=["IPFS.example"], resolver=dns)
    assert policy.check_host("ipfs.example.") == ["93.184.215.14"]
    with pytest.raises(PolicyRefused, match="not on this proxy's allow list"):
        policy.check_host("other.example")
    assert policy.check_locator(Locator("local", {"path": "/x"})).type == "local"
    with pytest.raises(LocatorError):
        policy.check_locator(Locator("s3", {"bucket": "b"}))
    policy.check_size(100)
    with pytest.raises(PolicyRefused, match="exceeds this proxy's limit"):
        policy.check_size(101)


def test_policy_refuses_a_registered_type_the_operator_did_not_allow() -> None:
    policy = FetchPolicy.of([], 100)
    with pytest.raises(PolicyRefused, match="does not fetch from 'local'"):
        policy.check_locator(Locator("local", {"path": "/x"}))


def test_real_resolver_resolves_localhost_and_refuses_garbage() -> None:
    policy = FetchPolicy.of(["local"], 100)
    with pytest.raises(PolicyRefused, match="internal address"):
        policy.check_host("localhost")
    with pytest.raises(PolicyRefused, match="cannot resolve"):
        policy.check_host("no-such-host.invalid")
