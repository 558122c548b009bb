"""Peer stream processors for ``bench.bench_peers``: each a script run as a subprocess.

``confluent_loop`` runs in the project's venv; ``quix_app`` and ``bytewax_flow`` run in
venvs of their own under ``.cache/bench-venvs/`` (``python -m bench.peers.venvs``), since
Quix Streams and Bytewax pin their own confluent-kafka. ``core`` is the decode, score and
encode that all of them share, importable with numpy, fastavro and onnxruntime alone.
"""
