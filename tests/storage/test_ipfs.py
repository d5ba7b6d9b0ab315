"""The ipfs plugin against a real js-ipfs daemon: pinning, the fetch policy on a seller-named
API, size limits, cut connections and unreachable nodes, each a clear typed error that
leaves no file under the final name."""

from __future__ import annotations

import time
from pathlib import Path

import ipfshttpclient
import pytest

from cpchain.storage import (
    FetchPolicy,
    IpfsStorage,
    Locator,
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    StorageError,
    TransferTooLarge,
)
from cpchain.storage.devservers import JsIpfsDaemon
from cpchain.storage.ipfs import api_multiaddr
from tests.storage.helpers import MIB, CuttingRelay, leftovers, make_file

ABSENT_CID = "QmVHjVTVHWn7jwe1gSTfHnRTF23VKcCKh7uDCYyNanDrKA"


@pytest.fixture
def uploaded(ipfs_daemon: JsIpfsDaemon, tmp_path: Path) -> tuple[IpfsStorage, Locator]:
    seller = IpfsStorage(ipfs_daemon.api)
    make_file(tmp_path / "private-name.bin", 3 * MIB)
    return seller, seller.upload(tmp_path / "private-name.bin")


def test_upload_pins_the_content_and_the_locator_names_cid_api_and_size(
    uploaded: tuple[IpfsStorage, Locator], ipfs_daemon: JsIpfsDaemon
) -> None:
    _, locator = uploaded
    assert locator.params["api"] == ipfs_daemon.api and locator.params["size"] == 3 * MIB
    client = ipfshttpclient.Client(api_multiaddr(ipfs_daemon.api))
    pins = client.pin.ls(type="recursive")["Keys"]
    assert locator.params["cid"] in pins
    assert "private-name" not in str(client.ls(locator.params["cid"]))  # the local name stays local


def test_public_api_goes_into_the_locator(ipfs_daemon: JsIpfsDaemon, tmp_path: Path) -> None:
    public = ipfs_daemon.api.replace("127.0.0.1", "localhost")
    seller = IpfsStorage(ipfs_daemon.api, public_api=public)
    make_file(tmp_path / "c.bin", 1000)
    locator = seller.upload(tmp_path / "c.bin")
    assert locator.params["api"] == public
    seller.download(locator, tmp_path / "out.bin")  # its own public address is trusted
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "c.bin").read_bytes()


def test_a_node_without_the_cid_is_object_missing_at_once(ipfs_daemon: JsIpfsDaemon, tmp_path: Path) -> None:
    seller = IpfsStorage(ipfs_daemon.api)
    started = time.monotonic()
    with pytest.raises(ObjectMissing, match=f"does not hold {ABSENT_CID}"):
        seller.download(Locator("ipfs", {"cid": ABSENT_CID, "api": ipfs_daemon.api, "size": 10}), tmp_path / "o")
    assert time.monotonic() - started < 5  # no search of the network until a timeout
    assert list(tmp_path.iterdir()) == []


def test_a_seller_named_api_needs_the_policy_and_internal_hosts_are_refused(
    uploaded: tuple[IpfsStorage, Locator], tmp_path: Path
) -> None:
    _, locator = uploaded
    refusals = [
        (IpfsStorage(), "no fetch policy allows other APIs"),
        (IpfsStorage(policy=FetchPolicy.of(["ipfs"], 1 << 30)), "resolves to an internal address"),
        (IpfsStorage(policy=FetchPolicy.of(["ipfs"], 1 << 30, hosts=["ipfs.example"])), "not on this proxy's allow"),
        (IpfsStorage(policy=FetchPolicy.of(["s3"], 1 << 30, allow_internal=True)), "does not fetch from 'ipfs'"),
    ]
    for fetcher, message in refusals:
        with pytest.raises(PolicyRefused, match=message):
            fetcher.download(locator, tmp_path / "out.bin")
    assert leftovers(tmp_path, "out.bin") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cid": "../../api/v0/shutdown"}, "is not a CID"),
        ({"api": "ftp://127.0.0.1:5001"}, "http or https URL"),
        ({"api": "http://user:pw@127.0.0.1:5001"}, "must not carry credentials"),
        ({"api": "http://127.0.0.1:5001/api/v0/shutdown?x="}, "bare http"),
        ({"api": "http://127.0.0.1:notaport"}, "not a valid URL"),
        ({"size": -1}, "must not be negative"),
        ({"size": "10"}, "field 'size' must be int"),
    ],
)
def test_malformed_ipfs_locators_are_refused_before_any_connection(
    change: dict[str, object], message: str, tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    params = {"cid": ABSENT_CID, "api": "http://127.0.0.1:5001", "size": 10, **change}
    with pytest.raises(LocatorError, match=message):
        IpfsStorage(policy=loopback_policy).download(Locator("ipfs", params), tmp_path / "o")


def test_size_limits_refuse_before_and_during_the_transfer(
    uploaded: tuple[IpfsStorage, Locator], tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    seller, locator = uploaded
    with pytest.raises(TransferTooLarge, match="exceeds the limit of 1048576"):
        seller.download(locator, tmp_path / "out.bin", max_bytes=MIB)
    with pytest.raises(PolicyRefused, match="exceeds this proxy's limit"):
        IpfsStorage(policy=FetchPolicy.of(["ipfs"], MIB, allow_internal=True)).download(locator, tmp_path / "out.bin")
    understated = Locator("ipfs", {**locator.params, "size": MIB})  # a seller lying about the size
    with pytest.raises(StorageError, match=f"server sent more than the {MIB} bytes announced"):
        IpfsStorage(policy=loopback_policy).download(understated, tmp_path / "out.bin")
    overstated = Locator("ipfs", {**locator.params, "size": 4 * MIB})
    with pytest.raises(StorageError, match=f"got {3 * MIB} of {4 * MIB} bytes"):
        seller.download(overstated, tmp_path / "out.bin")
    assert leftovers(tmp_path, "out.bin") == []


def test_a_connection_cut_mid_download_leaves_no_file(
    ipfs_daemon: JsIpfsDaemon, tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    seller = IpfsStorage(ipfs_daemon.api)
    make_file(tmp_path / "c.bin", 8 * MIB)
    locator = seller.upload(tmp_path / "c.bin")
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous complete file")
    host, port = ipfs_daemon.api.removeprefix("http://").split(":")
    with CuttingRelay((host, int(port)), cut_after=2 * MIB) as relay:
        relayed = Locator("ipfs", {**locator.params, "api": relay.url()})
        with pytest.raises(StorageError, match="transfer interrupted"):
            IpfsStorage(policy=loopback_policy).download(relayed, dest)
        assert relay.cuts == 1
    assert dest.read_bytes() == b"previous complete file"
    assert leftovers(tmp_path, "out.bin") == ["out.bin"]


def test_an_unreachable_api_is_one_clear_line(tmp_path: Path, loopback_policy: FetchPolicy) -> None:
    make_file(tmp_path / "c.bin", 10)
    dead = "http://127.0.0.1:9"
    with pytest.raises(StorageError, match=r"cannot reach the IPFS API at http://127\.0\.0\.1:9$"):
        IpfsStorage(dead).upload(tmp_path / "c.bin")
    with pytest.raises(StorageError, match=r"cannot connect to 127\.0\.0\.1") as info:
        IpfsStorage(policy=loopback_policy).download(
            Locator("ipfs", {"cid": ABSENT_CID, "api": dead, "size": 10}), tmp_path / "out.bin"
        )
    assert "\n" not in str(info.value)
    assert leftovers(tmp_path, "out.bin") == []
    with pytest.raises(StorageError, match="no IPFS API is configured"):
        IpfsStorage(policy=loopback_policy).upload(tmp_path / "c.bin")


def test_the_connection_goes_to_the_address_the_policy_checked(
    uploaded: tuple[IpfsStorage, Locator], tmp_path: Path
) -> None:
    """The policy resolves the seller's host once and the download connects to that very
    address (here a name no real DNS knows), so a second lookup cannot rebind it."""
    _, locator = uploaded
    port = str(locator.params["api"]).rsplit(":", 1)[1]
    answers = {"ipfs.seller.example": ["127.0.0.1"]}
    policy = FetchPolicy.of(["ipfs"], 1 << 30, allow_internal=True, resolver=lambda host: answers.get(host, []))
    named = Locator("ipfs", {**locator.params, "api": f"http://ipfs.seller.example:{port}"})
    IpfsStorage(policy=policy).download(named, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "private-name.bin").read_bytes()
