"""What operators drive: signed lifecycle commands, keys, gate runs, reading the store.

Used by the CLI and the demo; workers never import it.
"""
