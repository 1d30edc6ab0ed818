"""The outbound SMTP relay: apps submit mail, unsubkit adds what Gmail and Yahoo require.

Any app or MTA points its smarthost at the relay (``unsubkit relay``). Per message, the relay
reads ``X-Unsubkit-Purpose``/``-Topic``/``-Brand`` (and removes them), drops recipients who
opted out of a commercial purpose, prepares one copy per remaining recipient (their own
token in ``List-Unsubscribe``, ``List-Unsubscribe-Post``, a body link, DKIM last) and
forwards each copy to the upstream smarthost.

- :mod:`.policy` pure: control fields, replies, one DATA reply for many copies
- :mod:`.dsn` pure: the bounce for copies the upstream refused for good
- :mod:`.ledger` which copies of a deferred message already went out
- :mod:`.planner` consent and preparation of the copies (blocking; run in a thread)
- :mod:`.upstream` the smarthost connection pool (aiosmtplib)
- :mod:`.handler` the aiosmtpd handler object
- :mod:`.server` the listening server and its configuration
"""

from .handler import RelayHandler, RelayStats
from .server import RelayConfig, RelayServer
from .upstream import Upstream, UpstreamConfig

__all__ = ["RelayConfig", "RelayHandler", "RelayServer", "RelayStats", "Upstream", "UpstreamConfig"]
