"""A client-go credential (exec) plugin for the simulated API server: `python -m testkit.kube.exec_plugin`.

It prints an `ExecCredential` (client.authentication.k8s.io/v1) whose token the simulator accepts until its
`expirationTimestamp`, as EKS's `aws eks get-token` (~15 min) or GKE's plugin (~1 h) do, but with a lifetime of
seconds so that tests see expiry. The token is `sim-exec.<expiry unix seconds>.<HMAC-SHA256 of it>` with the
simulator's secret (`SimCluster.exec_secret`, passed in the environment by the kubeconfig the simulator writes).

Environment: SIM_EXEC_SECRET (required), SIM_EXEC_TTL_S (lifetime, default 60), SIM_EXEC_FAIL_FILE (while this file
exists the plugin fails with exit code 1, as a plugin does when its own credentials are gone), SIM_EXEC_COUNT_FILE
(one line appended per run, so tests can count runs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def sign(secret: str, expiry: int) -> str:
    """The token for an expiry time."""
    mac = hmac.new(secret.encode(), str(expiry).encode(), hashlib.sha256).hexdigest()
    return f"sim-exec.{expiry}.{mac}"


def verify(secret: str, token: str, now: float | None = None) -> bool | None:
    """None: not an exec token; True: valid now; False: forged or expired."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "sim-exec" or not parts[1].isdigit():
        return None
    expiry = int(parts[1])
    if not hmac.compare_digest(sign(secret, expiry), token):
        return False
    return (time.time() if now is None else now) < expiry


def main() -> int:
    """Print one ExecCredential, or fail while the fail file exists."""
    fail = os.environ.get("SIM_EXEC_FAIL_FILE")
    count = os.environ.get("SIM_EXEC_COUNT_FILE")
    if count:
        with Path(count).open("a", encoding="utf-8") as f:
            f.write("run\n")
    if fail and Path(fail).exists():
        print("exec plugin: my own credentials are gone (fail file present)", file=sys.stderr)
        return 1
    secret = os.environ["SIM_EXEC_SECRET"]
    expiry = int(time.time() + float(os.environ.get("SIM_EXEC_TTL_S", "60")))
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "token": sign(secret, expiry),
            "expirationTimestamp": datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    print(json.dumps(credential))
    return 0


if __name__ == "__main__":
    sys.exit(main())
