"""unsubkit: one-click unsubscribe (RFC 8058 / RFC 2369) for any email sender.

The public API::

    from unsubkit import Unsubkit, load_settings
    kit = Unsubkit.open(load_settings())
    kit.headers_for("jane@example.com", "marketing").headers.as_dict()
"""

from .consent import Action, ConsentLevel, Decision, Mechanism, Purpose, PurposeKind, Scope, Topic
from .errors import (
    AddressError,
    ConfigError,
    ConsentError,
    ExpiredToken,
    HeaderError,
    InvalidToken,
    StoreError,
    TokenError,
    UnsubkitError,
)
from .headers import UnsubscribeHeaders, parse_list_unsubscribe, set_unsubscribe_headers
from .prepare import Preparer, prepare, prepare_each
from .service import HeaderResult, Unsubkit
from .settings import Brand, Settings, load_settings
from .tokens import Claims, Key, KeyRing, TokenCodec

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AddressError",
    "Brand",
    "Claims",
    "ConfigError",
    "ConsentError",
    "ConsentLevel",
    "Decision",
    "ExpiredToken",
    "HeaderError",
    "HeaderResult",
    "InvalidToken",
    "Key",
    "KeyRing",
    "Mechanism",
    "Preparer",
    "Purpose",
    "PurposeKind",
    "Scope",
    "Settings",
    "StoreError",
    "TokenCodec",
    "TokenError",
    "Topic",
    "Unsubkit",
    "UnsubkitError",
    "UnsubscribeHeaders",
    "__version__",
    "load_settings",
    "parse_list_unsubscribe",
    "prepare",
    "prepare_each",
    "set_unsubscribe_headers",
]
