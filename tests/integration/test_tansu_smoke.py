"""The Tansu smoke subset: the embedded default of `make demo` and `driftline up` keeps
passing the core loop while the rest of the suite runs on Apache Kafka.

These are the suite's own tests, collected here a second time under the ``broker``
marker: scoring and audit, a hostile message among good ones, and drift state that
survives a killed worker (Faust table recovery, where Tansu's end offsets need the
workarounds). The Faust and aiokafka compatibility checks in test_compat_faust.py and
`driftline up` in test_embedded_stack.py run on Tansu too.
"""

from __future__ import annotations

import pytest

from tests.integration.test_drift import (
    test_shift_detected_and_killed_worker_resumes_at_the_same_record as test_drift_state_recovers,
)
from tests.integration.test_hostile_input import (
    test_null_value_is_dead_lettered as test_null_value_dead_lettered,
)
from tests.integration.test_pipeline import (
    test_records_become_stored_predictions_and_audited_events as test_records_scored_and_audited,
)

pytestmark = [pytest.mark.integration, pytest.mark.broker("tansu")]

__all__ = [
    "test_drift_state_recovers",
    "test_null_value_dead_lettered",
    "test_records_scored_and_audited",
]
