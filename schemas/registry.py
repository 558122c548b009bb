"""Optional Confluent Schema Registry: register the catalog, build a codec from its ids.

Subjects follow RecordNameStrategy (subject = full record name, e.g.
``driftline.v1.FeatureRecord``) because the features topic carries two record
types. Every released version is registered in version order, so the
registry's own BACKWARD check runs on each step; registering a schema that is
already there just returns its id. Tested against Apicurio Registry's
Confluent-compatible API (README, "Schema registry").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from driftline.schemas import catalog
from driftline.schemas.codec import SchemaCodec
from driftline.schemas.exceptions import SchemaRegistryError, UnknownSchemaId

# Apicurio Registry 3.x (3.3.3 checked) rewrites every `: "{}"` in a schema to `:{}` before it
# parses it (AvroContentAccepter.removeQuotedBrackets), so a string field whose default is the
# string "{}" (DriftEvent.evidence, LifecycleEvent.evidence) fails Avro's default validation
# and registering answers 422 "Failed to discover artifact type from content". Writing that
# string's brace as a JSON escape gives every JSON parser the same schema and passes.
_QUOTED_EMPTY_OBJECT = re.compile(r'(:\s*)"\{\}"')


def schema_text(schema: Mapping[str, Any]) -> str:
    """The JSON text registered for ``schema``: ``json.dumps``, with ``"{}"`` values escaped."""
    return _QUOTED_EMPTY_OBJECT.sub(r'\1"\\u007b}"', json.dumps(schema))


REQUEST_TIMEOUT_S = 10


def _config(url: str, auth: dict[str, Any]) -> dict[str, Any]:
    # The stock client waits forever on a request unless told otherwise: a
    # registry that accepts the connection and never answers would hang the
    # worker's start-up, or its decode of an unknown id, with no error.
    # Keyword arguments cannot hold dots: basic_auth_user_info -> basic.auth.user.info.
    return {
        "url": url,
        "timeout": REQUEST_TIMEOUT_S,
        **{key.replace("_", "."): value for key, value in auth.items()},
    }


def codec_from_registry(url: str, **auth: Any) -> SchemaCodec:
    """Register every schema version at ``url`` and return a codec over the registry's ids.

    ``auth`` takes the client's settings with underscores for dots, e.g.
    ``basic_auth_user_info="user:secret"``, ``ssl_ca_location=...``,
    ``max_retries=0``. Ids the codec meets later and does not know are fetched
    from the registry once and cached.
    """
    # Imported here: the client pulls in httpx and authlib (~0.3 s), which the
    # default pinned-id path never needs.
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    try:
        client = SchemaRegistryClient(_config(url, auth))
    except (TypeError, ValueError) as exc:
        raise SchemaRegistryError(f"invalid schema registry settings for {url}: {exc}") from exc

    ids: dict[str, dict[int, int]] = {}
    for name in catalog.SCHEMA_NAMES:
        subject = catalog.subject(name)
        for version, schema in catalog.history(name).items():
            try:
                schema_id = client.register_schema(subject, Schema(schema_text(schema), "AVRO"))
            except Exception as exc:  # SR errors, httpx transport errors, bad JSON
                raise SchemaRegistryError(
                    f"registering {subject} v{version} at {url} failed: {exc}. Check the URL "
                    "and credentials, and that the subject's compatibility level accepts it"
                ) from exc
            ids.setdefault(name, {})[version] = schema_id
    return SchemaCodec(ids, fetch=_RegistryFetcher(client, url))


class _RegistryFetcher:
    """Looks up a schema id the codec does not know; the codec caches the answer."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self._url = url

    def __call__(self, schema_id: int) -> dict[str, Any]:
        from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError

        try:
            registered = self._client.get_schema(schema_id)
        except ClientError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaId(
                    f"schema id {schema_id} is not registered at {self._url}"
                ) from exc
            raise SchemaRegistryError(
                f"looking up schema id {schema_id} at {self._url} failed: {exc}"
            ) from exc
        except Exception as exc:  # transport errors: the registry is down, not the data bad
            raise SchemaRegistryError(
                f"looking up schema id {schema_id} at {self._url} failed: {exc}"
            ) from exc
        if registered.schema_type not in (None, "AVRO"):
            raise UnknownSchemaId(
                f"schema id {schema_id} at {self._url} is a {registered.schema_type} schema, "
                "not Avro"
            )
        try:
            schema = json.loads(registered.schema_str)
        except (TypeError, ValueError) as exc:
            raise UnknownSchemaId(
                f"schema id {schema_id} at {self._url} is not a JSON Avro schema: {exc}"
            ) from exc
        if not isinstance(schema, dict):
            raise UnknownSchemaId(f"schema id {schema_id} at {self._url} is not a record schema")
        return schema
