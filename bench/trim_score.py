"""server/score.py with glibc's malloc_trim(0) after every large request: an allocator experiment.

    python server/serve.py --model_dir models/tf-dnn-mnist/1 --entry_script bench/trim_score.py

(azmlinfsrv takes the last --entry_script, so this one replaces the score.py that serve.py names.)

A JSON body of thousands of rows is parsed, copied and scored in buffers of
tens of megabytes, in whichever glibc arena the request's thread drew.  When
the request is done those pages are free but often not given back to the
kernel: the top of a heap cannot shrink past a chunk still in use, and freed
chunks inside it stay resident.  malloc_trim(0) walks every arena and releases
the free pages (madvise MADV_DONTNEED), so the worker's RSS drops back.  It is
called only after a request whose body was over TRIM_ABOVE_BYTES (default
1 MiB): small requests would pay the walk for nothing.

Under jemalloc (LD_PRELOAD) glibc's malloc_trim works on glibc's unused heap and
does nothing useful; bench/memory.py measures both.  Everything else is the
real entry script.
"""

import ctypes
import ctypes.util
import os

from azureml_inference_server_http.api.aml_request import rawhttp

import score  # the real entry script, in AML_APP_ROOT (server/), which azmlinfsrv puts on sys.path

TRIM_ABOVE_BYTES = int(os.environ.get("TRIM_ABOVE_BYTES", str(1024 * 1024)))
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")  # CDLL: the GIL is released during the call
_malloc_trim = _libc.malloc_trim
_malloc_trim.argtypes = [ctypes.c_size_t]
_malloc_trim.restype = ctypes.c_int

init = score.init


@rawhttp
def run(request):
    try:
        return score.run(request)
    finally:
        if (request.content_length or 0) > TRIM_ABOVE_BYTES:
            _malloc_trim(0)
