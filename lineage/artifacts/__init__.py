"""Model artifacts: content-addressed storage, signatures, encryption and metadata.

- ``store``: :class:`ArtifactStore`, bytes by sha256 digest, per region;
- ``crypto``: digests, Ed25519 signatures over them and AES-GCM at rest;
- ``metadata``: the sidecar beside an artifact (provenance, metrics, reference profile).
"""
