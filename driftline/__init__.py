"""driftline: streaming inference, drift detection and auditable model governance over Kafka.

The packages install under this one name (``pyproject.toml`` maps each top-level
folder to ``driftline.<folder>``): ``driftline.core``, ``driftline.schemas``,
``driftline.inference``, ``driftline.drift``, ``driftline.lineage`` and
``driftline.streams``.
"""

__version__ = "0.1.0"
