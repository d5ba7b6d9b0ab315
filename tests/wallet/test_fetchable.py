"""What the seller's wallet hands a proxy as the data's locator (no network: presigning is local).

An S3 object sits in the seller's own, private bucket, and its recorded locator has no URL;
each delivery gets a fresh presigned GET URL, never a key. Other locators go as recorded.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from cpchain.storage import Locator, S3Credentials, S3Settings, S3Storage
from cpchain.wallet.db import UploadRecord
from cpchain.wallet.seller import Seller

CREDENTIALS = S3Credentials("AKIAPDASHUNITTEST001", "pdash-unit-secret-0a1b2c3d4e5f")
SETTINGS = S3Settings("seller-bucket", "http://127.0.0.1:9", prefix="pdash/")


def upload(locator: Locator) -> UploadRecord:
    return UploadRecord(id=1, owner="0x" + "a" * 40, name="data.csv", source_path="/data.csv", plain_size=10,
                        cipher_size=38, data_hash="ab" * 32, storage_type=locator.type, locator=locator.to_json(),
                        wrapped_key=b"k", created=0)  # fmt: skip


def seller(asked: list[str | None]) -> Seller:
    def storage(kind: str | None) -> Any:
        asked.append(kind)
        return S3Storage(SETTINGS, CREDENTIALS, presign_expires=600)

    found = Seller.__new__(Seller)
    found.ctx = SimpleNamespace(storage=storage)  # type: ignore[assignment]
    return found


def test_an_s3_upload_is_delivered_with_a_fresh_presigned_url() -> None:
    stored = Locator("s3", {"endpoint": SETTINGS.endpoint, "bucket": SETTINGS.bucket, "key": "pdash/x.bin",
                            "size": 38, "url": ""})  # fmt: skip
    asked: list[str | None] = []
    sent = Locator.from_json(seller(asked)._fetchable(upload(stored)))
    assert asked == ["s3"]
    assert {k: v for k, v in sent.params.items() if k != "url"} == {
        k: v for k, v in stored.params.items() if k != "url"
    }
    url = urlsplit(str(sent.params["url"]))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{SETTINGS.endpoint}/seller-bucket/pdash/x.bin"
    assert "X-Amz-Signature=" in url.query and "X-Amz-Expires=600" in url.query
    assert CREDENTIALS.secret_access_key not in sent.to_json()


@pytest.mark.parametrize(
    "stored",
    [Locator("local", {"path": "/srv/files/x.bin"}), Locator("ipfs", {"api": "http://127.0.0.1:5001", "cid": "Qm"})],
)
def test_other_uploads_are_delivered_as_recorded(stored: Locator) -> None:
    asked: list[str | None] = []
    record = upload(stored)
    assert seller(asked)._fetchable(record) == record.locator and asked == []
