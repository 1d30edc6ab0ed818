"""``unsubkit dkim``: signing keys in the data dir and the DNS records to publish."""

from __future__ import annotations

import time
from enum import StrEnum

import typer

from ..dkimkeys import create_key, list_keys, load_key, zone_record
from ..errors import UnsubkitError
from ..keystore import ensure_data_dir
from .common import fail, get_settings, print_json

__all__ = ["register"]

dkim_app = typer.Typer(
    help="DKIM signing keys: generate one, list them, print the DNS TXT record to publish.",
    no_args_is_help=True,
)


class Algorithm(StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


@dkim_app.command("keygen")
def keygen(
    ctx: typer.Context,
    domain: str = typer.Option(..., "--domain", help="Signing domain (d=), e.g. example.com."),
    selector: str = typer.Option(..., "--selector", help="Selector (s=), e.g. s2026."),
    algorithm: Algorithm = typer.Option(Algorithm.rsa, "--algorithm", help="rsa or ed25519."),
    bits: int = typer.Option(2048, "--bits", help="RSA key size (2048 or more)."),
    name: str | None = typer.Option(
        None, "--name", help="Key name for brands' dkim_keys (default: SELECTOR._domainkey.DOMAIN)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the record details as JSON."),
) -> None:
    """Create a signing key in the data dir (mode 0600) and print its DNS TXT record.

    The private key is never printed. Publish the record, then add the key name to a
    brand's dkim_keys in unsubkit.toml.
    """
    settings = get_settings(ctx)
    try:
        ensure_data_dir(settings.data_dir)
        info = create_key(
            settings.dkim_dir,
            domain=domain,
            selector=selector,
            algorithm=algorithm.value,
            bits=bits,
            name=name,
            now=time.time(),
        )
    except (UnsubkitError, OSError) as exc:
        fail(str(exc))
    if as_json:
        print_json({**info.as_json(), "path": str(settings.dkim_dir / f"{info.name}.pem")})
        return
    typer.echo(f"# wrote {settings.dkim_dir / (info.name + '.pem')} (mode 0600; keep it private)",
               err=True)
    typer.echo(f"# publish this TXT record, then add {info.name!r} to a brand's dkim_keys:",
               err=True)
    typer.echo(zone_record(info))


@dkim_app.command("list")
def list_cmd(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Stored keys: name, algorithm, DNS name (never key material)."""
    settings = get_settings(ctx)
    try:
        keys = list_keys(settings.dkim_dir)
    except UnsubkitError as exc:
        fail(str(exc))
    if as_json:
        print_json([k.as_json() for k in keys])
        return
    if not keys:
        typer.echo("no DKIM keys (create one with `unsubkit dkim keygen`)", err=True)
    for k in keys:
        typer.echo(f"{k.name}\t{k.algorithm}\t{k.dns_name}")


@dkim_app.command("record")
def record(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Key name (see `unsubkit dkim list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the DNS TXT record of a stored key again."""
    settings = get_settings(ctx)
    try:
        info, _ = load_key(settings.dkim_dir, name)
    except UnsubkitError as exc:
        fail(str(exc))
    if as_json:
        print_json(info.as_json())
        return
    typer.echo(zone_record(info))


def register(app: typer.Typer) -> None:
    app.add_typer(dkim_app, name="dkim")
