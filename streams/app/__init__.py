"""The Faust wiring: the app and its agents, the runtime a worker holds, the worker process
and its HTTP API."""
