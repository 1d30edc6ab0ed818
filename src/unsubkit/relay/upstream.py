"""The smarthost the relay forwards to (an adapter over aiosmtplib, with a connection pool).

:meth:`Upstream.send` sends one copy to one recipient and always returns a
:class:`~unsubkit.relay.policy.Delivery`, never raises: aiosmtplib's exceptions are translated
into :class:`~unsubkit.errors.UpstreamError` where they happen and from there into the
delivery's code and text.

Which failures are temporary: everything before ``MAIL FROM`` (connecting, greeting, EHLO,
STARTTLS, AUTH) is the relay's own setup, never the message's fault, so it is temporary and
the app retries once the smarthost or the configuration is fixed. From ``MAIL FROM`` on, the
upstream's reply class decides (``4xx`` temporary, ``5xx`` permanent). A connection lost or a
reply that never came is temporary; if it happened after the final dot the copy may have been
delivered, so the retry may repeat it (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import aiosmtplib
from pydantic import SecretStr

from ..errors import ConfigError, UpstreamError
from .policy import Delivery, clean_text

__all__ = ["Security", "Upstream", "UpstreamConfig"]

log = logging.getLogger("unsubkit.relay")

Security = Literal["none", "starttls", "tls"]
T = TypeVar("T")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    host: str
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_file: Path | None = None
    timeout: float = 60.0
    connections: int = 4
    #: Our name in EHLO (aiosmtplib would otherwise look up the FQDN on every connect).
    local_hostname: str = "localhost"
    #: Seconds an idle connection is kept for the next copy.
    idle: float = 15.0

    def __post_init__(self) -> None:
        if self.security not in ("none", "starttls", "tls"):
            raise ConfigError(f"upstream security must be none, starttls or tls, not {self.security!r}")
        if self.password is not None and self.username is None:
            raise ConfigError("an upstream password needs an upstream username")
        if self.username is not None and self.security == "none" and not _is_loopback(self.host):
            # The password would cross the network in the clear.
            raise ConfigError(
                f"refusing to send upstream credentials to {self.host} without TLS: "
                "set relay_upstream_security to starttls or tls"
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _temporary(text: str) -> UpstreamError:
    return UpstreamError(clean_text(text), code=451, temporary=True)


def _refused(exc: aiosmtplib.SMTPResponseException) -> UpstreamError:
    code = int(exc.code)
    return UpstreamError(clean_text(exc.message) or "no reason given", code=code, temporary=code < 500)


class _Stale(Exception):
    """A pooled connection turned out to be closed before the transaction started."""


class Upstream:
    """``await up.send(...)`` per copy; ``await up.aclose()`` at the end."""

    def __init__(self, config: UpstreamConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._slots = asyncio.Semaphore(config.connections)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self.connects = 0

    # -- connections -------------------------------------------------------------------------

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password.get_secret_value() if c.password is not None else None,
            local_hostname=c.local_hostname,
            timeout=c.timeout,
            use_tls=c.security == "tls",
            start_tls=True if c.security == "starttls" else False if c.security == "none" else None,
            validate_certs=c.verify_tls,
            cert_bundle=str(c.ca_file) if c.ca_file else None,
        )
        where = f"upstream {c.address}"
        try:
            await client.connect()
            await client.ehlo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _temporary(f"{where} refused our login: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _temporary(f"{where} refused the session: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise _temporary(f"{where}: {exc}") from None
        except aiosmtplib.SMTPTimeoutError:
            raise _temporary(f"{where} did not answer in time") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused, DNS failure, TLS handshake or certificate errors.
            raise _temporary(f"cannot connect to {where}: {exc}") from None
        self.connects += 1
        return client

    async def _acquire(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = self.clock()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.config.idle:
                return client, True
            client.close()
        return await self._connect(), False

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.append((client, self.clock()))

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            client.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
            finally:
                client.close()

    # -- one copy ----------------------------------------------------------------------------

    async def send(self, mail_from: str, recipient: str, data: bytes, *, smtputf8: bool = False) -> Delivery:
        """Forward one copy; the outcome, whatever happened."""
        async with self._slots:
            try:
                code, text = await self._send(mail_from, recipient, data, smtputf8)
            except UpstreamError as exc:
                return Delivery(recipient, exc.code, str(exc), exc.temporary)
        return Delivery(recipient, code, text)

    async def _send(self, mail_from: str, recipient: str, data: bytes, smtputf8: bool) -> tuple[int, str]:
        for _ in range(2):
            client, reused = await self._acquire()
            try:
                result = await self._transaction(client, mail_from, recipient, data, smtputf8, reused)
            except _Stale:
                # The upstream dropped its idle sessions (a restart, an idle timeout): the
                # other pooled ones are as dead as this one.
                self._drop_idle()
                continue
            except UpstreamError:
                # A refusal (after RSET) leaves the session usable; _step closed broken ones.
                self._release(client)
                raise
            except BaseException:
                client.close()
                raise
            self._release(client)
            return result
        raise _temporary(f"upstream {self.config.address} keeps closing the connection")

    async def _step(self, client: aiosmtplib.SMTP, call: Awaitable[T], *, stale_ok: bool) -> T:
        """One command; refusals leave the connection usable after RSET, failures close it."""
        try:
            return await call
        except aiosmtplib.SMTPServerDisconnected:
            client.close()
            if stale_ok:
                raise _Stale from None
            raise _temporary(f"upstream {self.config.address} closed the connection") from None
        except aiosmtplib.SMTPTimeoutError:
            # A late reply would be taken for the answer to the next command: never reuse.
            client.close()
            raise _temporary(f"upstream {self.config.address} did not answer in time") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing this session
                client.close()
            elif client.is_connected:
                try:
                    await client.rset()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
            raise _refused(exc) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            if stale_ok and isinstance(exc, ConnectionError):
                raise _Stale from None
            raise _temporary(f"upstream {self.config.address}: {exc}") from None

    async def _transaction(self, client: aiosmtplib.SMTP, mail_from: str, recipient: str, data: bytes,
                           smtputf8: bool, reused: bool) -> tuple[int, str]:
        wide = smtputf8 or not (mail_from.isascii() and recipient.isascii())
        if wide and not client.supports_extension("smtputf8"):
            raise UpstreamError("5.6.7 upstream does not support SMTPUTF8 (non-ASCII address)",
                                code=553, temporary=False)
        options = ["SMTPUTF8"] if wide else []
        if not data.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        encoding = "utf-8" if wide else "ascii"
        sender = "" if mail_from in ("", "<>") else mail_from
        await self._step(client, client.mail(sender, options=options, encoding=encoding), stale_ok=reused)
        await self._step(client, client.rcpt(recipient, encoding=encoding), stale_ok=False)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        reply = await self._step(client, client.data(data), stale_ok=False)
        return int(reply.code), clean_text(reply.message)
