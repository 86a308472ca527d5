# Runs the TensorZero gateway that the `tensorzero` wheel embeds, for
# servetune (src/server/gateway.rs runs this text with the venv's python).
# Argument: the gateway's tensorzero.toml. When the gateway listens, prints
# the line `servetune-gateway-ready {"base_url": ...}` (the gateway's own log
# goes to the same stdout); serves until its stdin closes or SIGTERM.
# `_start_http_gateway` is private to tensorzero 2026.6.0: the setup script
# pins that version.
import json
import os
import signal
import sys

import tensorzero

gateway = tensorzero._start_http_gateway(
    config_file=sys.argv[1],
    clickhouse_url=None,
    postgres_url=None,
    valkey_url=None,
    async_setup=False,
)


def stop(*_):
    gateway.close()
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
print("servetune-gateway-ready", json.dumps({"base_url": gateway.base_url}), flush=True)
sys.stdin.read()
stop()
