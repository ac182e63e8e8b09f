"""Failpoints: named places where a test can kill the process, to prove crash safety.

The fault suite (tests/faults/) sets `CRYPTOLAKE_FAILPOINTS` to a comma-separated list of
names in a child process; when that process reaches a listed failpoint it sends itself
SIGKILL there, the one death no handler can soften (power loss, the OOM killer). Without the
variable a failpoint costs one environment lookup. Names are `<stage>.<place>`:

    bronze.body_moved          a snapshot run's first body moved into its partition
    bronze.before_manifest     every body moved, the run's manifest not yet written
    history.bodies_synced      a group of history bodies durable, their manifests not
    silver.before_commit       a silver batch upserted and recorded, not committed
    gold.before_commit         gold built and audited, not committed
    publish.before_commit      every Postgres table written, the transaction not committed
    stage.<name>.start         `run` about to start stage <name> (ingest, history, ...)
    stage.<name>.end           stage <name> finished, the next not started
"""

from __future__ import annotations

import os
import signal

VARIABLE = "CRYPTOLAKE_FAILPOINTS"


def failpoint(name: str) -> None:
    """SIGKILL this process if `name` is listed in CRYPTOLAKE_FAILPOINTS."""
    listed = os.environ.get(VARIABLE)
    if listed and name in listed.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
