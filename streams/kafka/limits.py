"""The largest message a driftline producer may send, and what to do about bigger ones.

librdkafka refuses a message whose key, value and headers add up to more than
the producer's ``message.max.bytes`` (``MSG_SIZE_TOO_LARGE``), and a broker
refuses one over its own ``message.max.bytes`` / the topic's
``max.message.bytes``. Outputs are therefore sized before they are produced:
a PredictionFrame too big for one message is split by rows, a single output
that cannot fit is a ``too_large`` dead letter, and a dead letter keeps as
much of the raw value as fits.
"""

from __future__ import annotations

from dataclasses import dataclass

TOO_LARGE = "too_large"

# Room for the key and headers (traceparent, CloudEvents) next to the value.
HEADROOM_BYTES = 4096


@dataclass(frozen=True)
class MessageLimit:
    """``max_bytes`` is the producer's ``message.max.bytes`` (DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES)."""

    max_bytes: int

    @property
    def max_value_bytes(self) -> int:
        return self.max_bytes - HEADROOM_BYTES

    def fits(self, value: bytes, key: bytes | None = None) -> bool:
        return len(value) + len(key or b"") <= self.max_value_bytes

    def explain(self, size: int, what: str) -> str:
        return (
            f"{what} of {size:,} bytes is over the {self.max_value_bytes:,}-byte limit "
            f"(DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES={self.max_bytes:,} less {HEADROOM_BYTES:,} "
            "for key and headers); raise it together with the broker's message.max.bytes"
        )


# librdkafka's own default for message.max.bytes.
DEFAULT_LIMIT = MessageLimit(1_000_000)
