"""Run the independent SCIM testers from PyPI against a live Chengfang server.

Usage: scim_testers.py BASE_URL TOKEN CA_FILE
1. scim2-tester (python-scim): discovery, then create/read/replace/patch/delete per resource type.
2. scim-sanity probe: the 7-phase RFC 7643/7644 lifecycle (strict mode).
Prints one line per check; exits non-zero if either reports a failure.
"""

import os
import subprocess
import sys

for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
    os.environ.pop(var, None)

base, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]

from httpx2 import Client  # noqa: E402
from scim2_client.engines.httpx2 import SyncSCIMClient  # noqa: E402
from scim2_tester import Status, check_server  # noqa: E402

client = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, verify=ca))
results = check_server(client, raise_exceptions=False)
failed = 0
for r in results:
    status = r.status.name if hasattr(r.status, "name") else str(r.status)
    print(f"scim2-tester {status:<8} {r.title} {'' if r.reason is None else '- ' + str(r.reason)[:300]}", flush=True)
    if r.status in (Status.ERROR, Status.CRITICAL):
        failed += 1
print(f"scim2-tester: {len(results)} checks, {failed} failed", flush=True)

probe = subprocess.run(
    [sys.executable, "-m", "scim_sanity", "probe", base, "--token", token, "--ca-bundle", ca,
     "--i-accept-side-effects", "--json-output"],
    capture_output=True, text=True,
)
print(probe.stdout[-6000:], flush=True)
print(probe.stderr[-2000:], file=sys.stderr, flush=True)
print(f"scim-sanity exit {probe.returncode}", flush=True)
sys.exit(1 if failed or probe.returncode != 0 else 0)
