"""Schemathesis hooks of the fuzz (SCHEMATHESIS_HOOKS=test/schemathesis-hooks.py).

The fleet POSTs webhooks to a bot's `callbackUrl`, and a generated one may name any public address. So every
http(s) callbackUrl is sent as MEEBOTER_WEBHOOK_SINK instead: the test's own receiver on 127.0.0.1, which the
fleet under test is told to allow (WEBHOOK_ALLOWED_HOSTS). Without that variable it becomes a loopback URL the
fleet refuses (400), so nothing is ever delivered off this machine. Other values (not a string, not http) are
sent as generated, to be refused.
"""
import os
import re

import schemathesis

SINK = os.environ.get("MEEBOTER_WEBHOOK_SINK", "http://127.0.0.1:9/meeboter-fuzz-refused")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("callbackUrl"), str) and re.match(r"(?i)^https?:", body["callbackUrl"]):
        body["callbackUrl"] = SINK
