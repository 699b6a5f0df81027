"""`python -m nic_jax.main` with one fault injected into its checkpoint writer.

The fault-injection tests run this script instead of the module to reach points
a timer cannot hit reliably. `NIC_JAX_FAULT` picks the fault:

* `slow_save:<step>:<marker>`: the save of `<step>` touches `<marker>` and then
  hangs inside orbax's writer, so the test can SIGKILL the run mid-save;
* `disk_full:<step>`: the save of `<step>` fails with ENOSPC, as a full disk.

The patched function is orbax's JSON item writer (the `meta` item of each
checkpoint); the array items are written beside it by tensorstore.
"""

import errno
import os
import pathlib
import sys
import time


def _install(spec: str) -> None:
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler

    kind, _, arg = spec.partition(":")
    step, _, marker = arg.partition(":")
    real = handler.JsonCheckpointHandler._save_fn

    async def faulty(self, x, directory):
        if f"/{step}.orbax-checkpoint-tmp" not in str(directory):
            return await real(self, x, directory)
        if kind == "slow_save":
            pathlib.Path(marker).touch()
            time.sleep(3600)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))

    handler.JsonCheckpointHandler._save_fn = faulty


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # configs/ beside nic_jax, as with -m
    if os.environ.get("NIC_JAX_FAULT"):
        _install(os.environ["NIC_JAX_FAULT"])
    from nic_jax import main

    main.run()
