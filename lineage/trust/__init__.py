"""Who may do what: keys, the roles file, signed commands and their judge.

- ``keys``: Ed25519 key pairs, key ids and the key ring of trusted public keys;
- ``roles``: the roles file (actors, roles and the actions each may ask for);
- ``commands``: signed lifecycle commands, the requests people, CI and the policy send;
- ``rbac``: :class:`CommandAuthority`, which turns a command into an event or a refusal.
"""
