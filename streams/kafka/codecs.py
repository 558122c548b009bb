"""The schema codec for these settings: pinned ids, or ids from a schema registry."""

from __future__ import annotations

from driftline.core.settings import Settings
from driftline.schemas import SchemaCodec, codec_from_registry, default_codec


def codec_for(settings: Settings) -> SchemaCodec:
    registry = settings.schema_registry
    if registry.registry_url is None:
        return default_codec()
    auth = {}
    if registry.registry_username:
        password = (
            registry.registry_password.get_secret_value() if registry.registry_password else ""
        )
        auth["basic_auth_user_info"] = f"{registry.registry_username}:{password}"
    return codec_from_registry(registry.registry_url, **auth)
