"""The one exception tree of unsubkit.

Foreign exceptions (cryptography, SQLAlchemy, email-validator, dkimpy, sockets) are translated
where they enter our code (``raise InvalidToken(...) from exc``), so callers catch these only::

    UnsubkitError
    ├── ConfigError              settings file or environment is wrong, or `init` was not run
    ├── TokenError
    │   ├── InvalidToken         tampered, truncated, unknown key, bad encoding
    │   └── ExpiredToken         authentic but older than the brand's lifetime
    ├── HeaderError              a List-Unsubscribe value cannot be built or parsed
    ├── AddressError             not a syntactically valid email address
    ├── ConsentError
    │   ├── UnknownPurpose
    │   ├── UnknownTopic
    │   ├── UnknownBrand
    │   └── UnknownContact
    ├── StoreError               database unreachable, locked, schema missing
    │   └── StoreBusy            a temporary condition: retry later
    ├── DKIMError                signing key missing or unusable, message unsignable
    ├── MessageError             a message cannot be parsed or prepared
    │   └── SenderNotVerified    mailto From fallback: no aligned DKIM signature verifies
    ├── WebhookError             endpoint registration or delivery problems
    └── UpstreamError            the relay's smarthost refused or failed (``temporary`` or not)

Every error carries a short, user-facing message that never contains secrets or key material.
"""

from __future__ import annotations

__all__ = [
    "AddressError",
    "ConfigError",
    "ConsentError",
    "DKIMError",
    "ExpiredToken",
    "HeaderError",
    "InvalidToken",
    "MessageError",
    "SenderNotVerified",
    "StoreBusy",
    "StoreError",
    "TokenError",
    "UnknownBrand",
    "UnknownContact",
    "UnknownPurpose",
    "UnknownTopic",
    "UnsubkitError",
    "UpstreamError",
    "WebhookError",
]


class UnsubkitError(Exception):
    """Root of every error unsubkit raises on purpose."""


class ConfigError(UnsubkitError):
    """The configuration is missing, unreadable or inconsistent."""


class TokenError(UnsubkitError):
    """A token could not be used."""


class InvalidToken(TokenError):
    """The token is not one we sealed (tampered, truncated, unknown key, bad encoding)."""


class ExpiredToken(TokenError):
    """The token is authentic but past its lifetime."""


class HeaderError(UnsubkitError):
    """A List-Unsubscribe header value cannot be built or parsed."""


class AddressError(UnsubkitError):
    """An email address is not valid."""


class ConsentError(UnsubkitError):
    """A consent operation names something that does not exist or is not allowed."""


class UnknownPurpose(ConsentError):
    pass


class UnknownTopic(ConsentError):
    pass


class UnknownBrand(ConsentError):
    pass


class UnknownContact(ConsentError):
    pass


class StoreError(UnsubkitError):
    """The consent store failed."""


class StoreBusy(StoreError):
    """The store is temporarily unavailable (locked, connection refused); retrying may work."""


class DKIMError(UnsubkitError):
    """DKIM signing or key handling failed."""


class MessageError(UnsubkitError):
    """A message cannot be parsed or prepared."""


class SenderNotVerified(MessageError):
    """A message's From address is not proven by a DKIM signature aligned with it.

    ``temporary`` is true when the proof could not be checked (a DNS timeout): retry later.
    """

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class WebhookError(UnsubkitError):
    """Webhook endpoint management or delivery failed."""


class UpstreamError(UnsubkitError):
    """The relay's upstream smarthost refused a copy or could not be reached.

    ``code`` is the SMTP reply code to pass on (the upstream's own when it gave one);
    ``temporary`` says whether sending again later may work.
    """

    def __init__(self, message: str, *, code: int, temporary: bool) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = temporary
