"""The key ring on disk: modes, rotation order, corrupt files, and key material never shown."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from unsubkit.errors import ConfigError
from unsubkit.keystore import add_key, ensure_data_dir, load_ring, save_keys
from unsubkit.tokens import Key, new_key

SEVENS = base64.b64encode(b"\x07" * 32).decode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secrets_of(path: Path) -> list[str]:
    return [k["secret"] for k in json.loads(path.read_text())["keys"]]


def assert_no_key_material(text: str, keys_file: Path) -> None:
    for secret_b64 in secrets_of(keys_file):
        raw = base64.b64decode(secret_b64)
        for form in (secret_b64, secret_b64.rstrip("="), raw.hex(), repr(raw)[2:-1][:24],
                     base64.urlsafe_b64encode(raw).decode().rstrip("=")):
            assert form not in text


def test_add_key_creates_private_dir_and_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = data / "keys.json"
    key = add_key(path, 1000.0)
    assert mode(data) == 0o700
    assert mode(path) == 0o600
    ring = load_ring(path)
    assert [k.id for k in ring.keys] == [key.id]
    assert ring.current.secret == key.secret
    assert not [p for p in data.iterdir() if p.name.startswith(".keys.")]  # no temp file left


def test_ensure_data_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    d = tmp_path / "loose"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    ensure_data_dir(d)
    assert mode(d) == 0o700


def test_rotation_keeps_old_keys_and_puts_the_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys.json"
    first = add_key(path, 1000.0)
    second = add_key(path, 2000.0)
    third = add_key(path, 3000.0)
    ring = load_ring(path)
    assert [k.id for k in ring.keys] == [third.id, second.id, first.id]
    assert ring.current.id == third.id
    assert mode(path) == 0o600


def test_load_ring_orders_by_creation_time(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old, new = new_key(100.0), new_key(200.0)
    save_keys(path, [old, new])  # written oldest first on purpose
    assert load_ring(path).current.id == new.id


def test_missing_ring_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsubkit init"):
        load_ring(tmp_path / "none" / "keys.json")


@pytest.mark.parametrize(
    "content",
    [
        "not json at all",
        "[]",
        '{"keys": []}',
        '{"keys": [{"id": "0011aabb"}]}',
        '{"keys": [{"id": "0011aabb", "created_at": 1, "secret": "c2hvcnQ="}]}',
        '{"keys": [{"id": "zz", "created_at": 1, "secret": "' + SEVENS + '"}]}',
    ],
)
def test_corrupt_ring_is_a_clear_error_without_its_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_ring(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "c2hvcnQ" not in message and SEVENS not in message


def test_rotation_never_overwrites_an_unreadable_ring(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"keys": [{"id": "0011aabb", "created_at": 1}]}')
    with pytest.raises(ConfigError):
        add_key(path, 1.0)
    assert path.read_text() == '{"keys": [{"id": "0011aabb", "created_at": 1}]}'


def test_unreadable_ring_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "keys.json").mkdir()
    with pytest.raises(ConfigError, match="cannot read key ring"):
        load_ring(tmp_path / "keys.json")


def test_key_material_not_in_repr_or_errors(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys.json"
    add_key(path, 1.0)
    add_key(path, 2.0)
    ring = load_ring(path)
    assert_no_key_material(repr(ring) + repr(list(ring.keys)) + str(ring.current), path)
    with pytest.raises(ValueError) as info:
        Key(id=ring.current.id, secret=ring.current.secret[:31])
    assert_no_key_material(str(info.value), path)


def test_cli_init_rotate_and_list(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    data = tmp_path / "data"
    keys = data / "keys.json"
    first = run_cli("init", env=env)
    assert "key" in first.stdout
    assert mode(data) == 0o700 and mode(keys) == 0o600
    before = keys.read_text()
    again = run_cli("init", env=env)  # safe to run twice: same key, same database
    assert keys.read_text() == before
    assert "key " not in again.stdout

    rotated = run_cli("keys", "rotate", env=env)
    assert "new current key" in rotated.stdout
    listing = json.loads(run_cli("keys", "list", "--json", env=env).stdout)
    assert len(listing) == 2
    assert [row["current"] for row in listing] == [True, False]
    assert set(listing[0]) == {"id", "created_at", "current"}
    ids = [k["id"] for k in json.loads(keys.read_text())["keys"]]
    assert [row["id"] for row in listing] == ids
    plain = run_cli("keys", "list", env=env)
    for out in (plain.stdout + plain.stderr, rotated.stdout + rotated.stderr, first.stdout + again.stdout):
        assert_no_key_material(out, keys)
    assert ids[0] in plain.stdout


def test_cli_keys_without_init_is_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    for args in (("keys", "list"), ("keys", "rotate")):
        res = run_cli(*args, env=env, check=False)
        assert res.returncode != 0
        assert "init" in res.stderr
        assert "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
