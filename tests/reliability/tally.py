"""The fault-injection tally: faults injected, bad inputs tried, runs resumed,
checkpoints verified; reported at the end of the session (`report`)."""

import collections
import json
import os

FULL = os.environ.get("NIC_JAX_FULL_FAULTS", "") == "1"
TALLY = collections.Counter()


def report(terminalreporter) -> None:
    """Prints the tally, and writes it as JSON to `$NIC_JAX_FAULT_REPORT` if set."""
    if not TALLY:
        return
    mode = "full" if FULL else "short (NIC_JAX_FULL_FAULTS=1 for the full one)"
    terminalreporter.write_sep("-", f"fault injection, {mode}")
    for kind, count in sorted(TALLY.items()):
        terminalreporter.write_line(f"{kind}: {count}")
    path = os.environ.get("NIC_JAX_FAULT_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"full": FULL, **TALLY}, f, indent=1, sort_keys=True)
