"""``end_process``: how a finished process of a multi-process recipe run ends. Native objects destroyed during the
interpreter's finalization sometimes aborted a rank of a finished 2-process CPU run ("terminate called without an
active exception", exit -6), and `accelerate launch` reported the run as failed. Here a stand-in for such an object
aborts the process from its finalizer; ending with ``end_process`` skips finalization, keeps the atexit handlers and
the buffered output, and exits 0."""

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, os, sys

class NativeThreadAtExit:  # a stand-in: its destructor aborts, as a joinable std::thread's does
    def __del__(self):
        os.abort()

held = NativeThreadAtExit()
atexit.register(lambda: print("atexit handler ran", flush=True))
sys.stdout.write("buffered line, not flushed")
if sys.argv[1] == "end_process":
    from trl_ext.recipe.distributed import end_process
    end_process()
sys.exit(0)
"""


@pytest.mark.parametrize("ending", ["end_process", "interpreter exit"])
def test_end_process_skips_the_finalizers_that_abort(ending, tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ending], capture_output=True, text=True, timeout=120)
    if ending == "interpreter exit":  # the failure end_process avoids: a finished program aborted at exit
        assert proc.returncode == -6, (proc.returncode, proc.stderr[-2000:])
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "buffered line, not flushed" in proc.stdout and "atexit handler ran" in proc.stdout
