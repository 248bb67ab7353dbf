#!/usr/bin/env python3
"""Smoke-test a running llm/serve.py: one structured-output chat completion.

    python3 llm/smoke.py [--base-url http://127.0.0.1:8089] [--repeat 3] [--no-cache]
                         [--show-response]

Sends the OpsGuard "decision" request (temperature 0, max_tokens 100,
response_format json_schema in the nested form llama.cpp honours), checks that
choices[0].message.content is JSON obeying the schema, and prints the latency
and the server's `timings`. Exits non-zero if any check fails. Standard
library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["escalate", "restart_database_risky"]},
        "reason": {"type": "string", "minLength": 1},
    },
    "required": ["action", "reason"],
    "additionalProperties": False,
}

MESSAGES = [
    {
        "role": "system",
        "content": (
            "You are OpsGuard, an incident-response assistant. Decide the next action "
            'for the incident. Reply only with JSON: {"action": one of "escalate" or '
            '"restart_database_risky", "reason": short explanation}. If the cause is '
            "unknown, prefer escalate."
        ),
    },
    {
        "role": "user",
        "content": (
            "Incident: the primary PostgreSQL database crashed 5 minutes ago. The cause "
            "is unknown; logs show no obvious error. What should we do?"
        ),
    },
]


def request_body(cache_prompt: bool) -> dict:
    body = {
        "messages": MESSAGES,
        "temperature": 0,
        "max_tokens": 100,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "decision", "schema": SCHEMA},
        },
    }
    if not cache_prompt:
        body["cache_prompt"] = False  # llama.cpp extension: re-evaluate the whole prompt
    return body


def check_decision(content: str) -> dict:
    obj = json.loads(content)
    if not isinstance(obj, dict):
        raise ValueError("content is not a JSON object")
    if set(obj) != {"action", "reason"}:
        raise ValueError(f"unexpected keys: {sorted(obj)}")
    if obj["action"] not in SCHEMA["properties"]["action"]["enum"]:
        raise ValueError(f"action not in enum: {obj['action']!r}")
    if not isinstance(obj["reason"], str) or len(obj["reason"]) < 1:
        raise ValueError("reason must be a non-empty string")
    return obj


def main() -> int:
    ap = argparse.ArgumentParser()
    port = os.environ.get("OPSGUARD_LLM_PORT", "8089")
    ap.add_argument("--base-url", default=f"http://127.0.0.1:{port}")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-cache", action="store_true", help="send cache_prompt=false")
    ap.add_argument("--show-response", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    data = json.dumps(request_body(not args.no_cache)).encode()
    ok = True
    for i in range(args.repeat):
        req = urllib.request.Request(
            args.base_url.rstrip("/") + "/v1/chat/completions",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            raw = resp.read()
        elapsed = time.monotonic() - t0
        reply = json.loads(raw)
        if args.show_response:
            print(json.dumps(reply, indent=2))
        content = reply["choices"][0]["message"]["content"]
        try:
            decision = check_decision(content)
            verdict = f"OK {json.dumps(decision)}"
        except Exception as exc:  # noqa: BLE001
            ok = False
            verdict = f"FAIL {exc}: {content!r}"
        t = reply.get("timings", {})
        print(
            f"#{i + 1} {elapsed * 1000:.0f} ms wall | prompt {t.get('prompt_n')} tok "
            f"({t.get('cache_n')} cached) {t.get('prompt_ms', 0):.0f} ms | "
            f"gen {t.get('predicted_n')} tok {t.get('predicted_ms', 0):.0f} ms "
            f"({t.get('predicted_per_second', 0):.1f} tok/s) | "
            f"finish={reply['choices'][0].get('finish_reason')} | {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
