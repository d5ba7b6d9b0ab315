from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[Status]
    MALFORMED: _ClassVar[Status]
    FRAME_TOO_LARGE: _ClassVar[Status]
    BAD_SIGNATURE: _ClassVar[Status]
    EXPIRED: _ClassVar[Status]
    REPLAYED: _ClassVar[Status]
    UNKNOWN_ORDER: _ClassVar[Status]
    WRONG_SIGNER: _ClassVar[Status]
    NOT_THIS_PROXY: _ClassVar[Status]
    WRONG_STATE: _ClassVar[Status]
    DEADLINE_PASSED: _ClassVar[Status]
    DESC_HASH_MISMATCH: _ClassVar[Status]
    DATA_HASH_MISMATCH: _ClassVar[Status]
    STORAGE_TYPE_MISMATCH: _ClassVar[Status]
    BAD_KEY_GRANT: _ClassVar[Status]
    FETCH_REFUSED: _ClassVar[Status]
    FETCH_FAILED: _ClassVar[Status]
    CLAIM_FAILED: _ClassVar[Status]
    NOT_READY: _ClassVar[Status]
    UNAVAILABLE: _ClassVar[Status]
    INTERNAL: _ClassVar[Status]
OK: Status
MALFORMED: Status
FRAME_TOO_LARGE: Status
BAD_SIGNATURE: Status
EXPIRED: Status
REPLAYED: Status
UNKNOWN_ORDER: Status
WRONG_SIGNER: Status
NOT_THIS_PROXY: Status
WRONG_STATE: Status
DEADLINE_PASSED: Status
DESC_HASH_MISMATCH: Status
DATA_HASH_MISMATCH: Status
STORAGE_TYPE_MISMATCH: Status
BAD_KEY_GRANT: Status
FETCH_REFUSED: Status
FETCH_FAILED: Status
CLAIM_FAILED: Status
NOT_READY: Status
UNAVAILABLE: Status
INTERNAL: Status

class Envelope(_message.Message):
    __slots__ = ("message", "signed")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    signed: str
    def __init__(self, message: _Optional[bytes] = ..., signed: _Optional[str] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("seller_data", "buyer_data")
    SELLER_DATA_FIELD_NUMBER: _ClassVar[int]
    BUYER_DATA_FIELD_NUMBER: _ClassVar[int]
    seller_data: SellerData
    buyer_data: BuyerData
    def __init__(self, seller_data: _Optional[_Union[SellerData, _Mapping]] = ..., buyer_data: _Optional[_Union[BuyerData, _Mapping]] = ...) -> None: ...

class SellerData(_message.Message):
    __slots__ = ("order_id", "product", "locator", "key_grant")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    LOCATOR_FIELD_NUMBER: _ClassVar[int]
    KEY_GRANT_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    product: str
    locator: str
    key_grant: str
    def __init__(self, order_id: _Optional[int] = ..., product: _Optional[str] = ..., locator: _Optional[str] = ..., key_grant: _Optional[str] = ...) -> None: ...

class BuyerData(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    def __init__(self, order_id: _Optional[int] = ...) -> None: ...

class ByteRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("data_hash", "size", "fetched_tx", "key_grant", "download_path", "file_port", "delivered", "delivered_tx", "missing", "download_url")
    DATA_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FETCHED_TX_FIELD_NUMBER: _ClassVar[int]
    KEY_GRANT_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_PATH_FIELD_NUMBER: _ClassVar[int]
    FILE_PORT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_TX_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    data_hash: str
    size: int
    fetched_tx: str
    key_grant: str
    download_path: str
    file_port: int
    delivered: bool
    delivered_tx: str
    missing: _containers.RepeatedCompositeFieldContainer[ByteRange]
    download_url: str
    def __init__(self, data_hash: _Optional[str] = ..., size: _Optional[int] = ..., fetched_tx: _Optional[str] = ..., key_grant: _Optional[str] = ..., download_path: _Optional[str] = ..., file_port: _Optional[int] = ..., delivered: _Optional[bool] = ..., delivered_tx: _Optional[str] = ..., missing: _Optional[_Iterable[_Union[ByteRange, _Mapping]]] = ..., download_url: _Optional[str] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("status", "error", "request_nonce", "order_id", "trade")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_NONCE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    status: Status
    error: str
    request_nonce: str
    order_id: int
    trade: Trade
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., error: _Optional[str] = ..., request_nonce: _Optional[str] = ..., order_id: _Optional[int] = ..., trade: _Optional[_Union[Trade, _Mapping]] = ...) -> None: ...
