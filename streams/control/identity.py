"""`driftline keys new`: an Ed25519 key per actor, and the development roles file.

With no DRIFTLINE_REGISTRY_ROLES_FILE, the embedded stack uses a development
policy: `<data dir>/roles.toml`, rewritten from `<key dir>/actors.json` each time
an actor is added. In production the roles file is yours; this only prints the
line to add to it.
"""

from __future__ import annotations

import json
from pathlib import Path

from driftline.core.settings import Settings
from driftline.lineage.trust.keys import KeyPair, generate_key, public_key_to_base64, save_keypair
from driftline.lineage.trust.roles import EXAMPLE_ROLES, write_example_roles
from driftline.streams.exceptions import StreamsError


def create_actor(settings: Settings, actor: str, roles: list[str]) -> tuple[KeyPair, str]:
    """Create the actor's key pair; returns it and a sentence on what the policy now says."""
    unknown = sorted(set(roles) - EXAMPLE_ROLES.keys())
    if settings.development_policy and unknown:
        raise StreamsError(
            f"unknown role(s) {unknown}; the development policy has {sorted(EXAMPLE_ROLES)}"
        )
    key_dir = settings.key_dir
    if (key_dir / f"{actor}.key").exists():
        raise StreamsError(f"actor {actor!r} already has a key at {key_dir / (actor + '.key')}")
    keypair = generate_key(actor)
    save_keypair(key_dir, keypair)
    public = public_key_to_base64(keypair.public_key)
    if not settings.development_policy:
        line = f'{actor} = {{ roles = {json.dumps(roles)}, key = "{public}" }}'
        return keypair, f"add to [actors] in {settings.roles_file}:\n  {line}"
    actors_file = key_dir / "actors.json"
    actors = json.loads(actors_file.read_text()) if actors_file.exists() else {}
    actors[actor] = {"roles": roles, "key": public}
    actors_file.write_text(json.dumps(actors, indent=2, sort_keys=True))
    _write_policy(settings.roles_file, actors)
    return keypair, f"development policy {settings.roles_file}: {actor} holds {', '.join(roles)}"


def _write_policy(path: Path, actors: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_example_roles(
        path,
        {name: spec["key"] for name, spec in actors.items()},
        roles={name: spec["roles"] for name, spec in actors.items()},
        four_eyes=True,
    )
