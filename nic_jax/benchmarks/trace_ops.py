"""A `jax.profiler` trace's events, summed by op name (`profile_generation`).

Pure functions over the trace jax.profiler writes (`*.trace.json.gz`, Chrome's
trace event format), apart from the benchmark's flags so that tests import them.
"""

import collections
import glob
import gzip
import json
import os


def complete_events(trace_dir: str) -> list[tuple[str, str, float]]:
    """(process name, event name, microseconds) of the newest trace's complete
    events ("ph": "X") under `trace_dir`."""
    found = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not found:
        raise RuntimeError(f"{trace_dir}: jax.profiler wrote no *.trace.json.gz")
    with gzip.open(max(found, key=os.path.getmtime)) as f:
        events = json.load(f)["traceEvents"]
    process = {
        e["pid"]: e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    return [
        (process.get(e["pid"], str(e["pid"])), e["name"], float(e["dur"]))
        for e in events
        if e.get("ph") == "X" and "dur" in e
    ]


def _is_xla_op(name: str) -> bool:
    """A host event of an XLA op: not a Python frame nor a runtime call."""
    runtime = name.startswith(("$", "PjitFunction")) or "::" in name
    return not runtime


def op_table(events: list[tuple[str, str, float]], top: int) -> dict:
    """Time by op name: the device's kernels when the trace has a device, else
    the host events of XLA's ops (`_is_xla_op`)."""
    device = [e for e in events if e[0].startswith("/device:")]
    chosen = device or [e for e in events if _is_xla_op(e[1])]
    micros, calls = collections.Counter(), collections.Counter()
    for _, name, duration in chosen:
        micros[name] += duration
        calls[name] += 1
    total = sum(micros.values()) or 1.0
    rows = [
        [name[:120], us / 1e3, calls[name], us / total]
        for name, us in micros.most_common(top)
    ]
    return {
        "source": "device kernels" if device else "host events",
        "kernel_ms": total / 1e3 if device else None,
        "top": rows,
    }
