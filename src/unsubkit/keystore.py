"""The token key ring on disk (``<data_dir>/keys.json``, mode 0600). An adapter: IO only."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from .errors import ConfigError
from .tokens import Key, KeyRing, new_key

__all__ = ["add_key", "ensure_data_dir", "load_ring", "save_keys", "write_private"]


def ensure_data_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _read(path: Path) -> list[Key]:
    try:
        raw = json.loads(path.read_text())
        return [
            Key(id=k["id"], secret=base64.b64decode(k["secret"]), created_at=float(k["created_at"]))
            for k in raw["keys"]
        ]
    except FileNotFoundError:
        raise ConfigError(f"no key ring at {path}: run `unsubkit init` first") from None
    except PermissionError:
        raise ConfigError(f"cannot read key ring {path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"cannot read key ring {path}: {exc.strerror or type(exc).__name__}") from None
    except (ValueError, KeyError, TypeError) as exc:
        # Never echo the file: it holds key material.
        raise ConfigError(f"key ring {path} is corrupt ({type(exc).__name__})") from None


def load_ring(path: Path) -> KeyRing:
    keys = _read(path)
    if not keys:
        raise ConfigError(f"key ring {path} holds no keys")
    return KeyRing(sorted(keys, key=lambda k: k.created_at, reverse=True))


def save_keys(path: Path, keys: list[Key]) -> None:
    """Write atomically with mode 0600 (a crash never leaves a half-written ring)."""
    data = {
        "keys": [
            {"id": k.id, "created_at": k.created_at, "secret": base64.b64encode(k.secret).decode()}
            for k in keys
        ]
    }
    ensure_data_dir(path.parent)
    write_private(path, json.dumps(data, indent=1).encode())


def write_private(path: Path, data: bytes) -> None:
    """Atomic write with mode 0600 from the first byte (no window where others may read; a
    crash never leaves a half-written file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_key(path: Path, now: float) -> Key:
    """Add a new current key (creating the ring if needed); older keys keep opening tokens."""
    keys = _read(path) if path.exists() else []
    key = new_key(now)
    save_keys(path, [key, *keys])
    return key
