#!/bin/bash
# Runs once, inside the influxdb container, right after DOCKER_INFLUXDB_INIT_MODE=setup created the
# org, the `telemetry` bucket (with its retention) and the admin token. Creates one token per
# service, each scoped to what it needs, each in a volume of its own that only that service mounts
# (so Grafana, which may only read, never sees a write token):
#   ingest/ingest.token      write telemetry        (volume tokens-ingest, the ingest service)
#   telegraf/telegraf.token  write telemetry        (volume tokens-telegraf, optional Telegraf profile)
#   grafana/grafana.token    read telemetry and the downsampled bucket (volume tokens-grafana)
# Tokens are never printed. The admin token stays in .env for operators only.
set -euo pipefail

TOKENS_DIR=/run/est-tokens
DOWNSAMPLED_BUCKET="${DOCKER_INFLUXDB_INIT_BUCKET}_1h"
DOWNSAMPLED_RETENTION="${EST_DOWNSAMPLED_RETENTION:-400d}"

umask 077
mkdir -p "$TOKENS_DIR/ingest" "$TOKENS_DIR/telegraf" "$TOKENS_DIR/grafana"

# Hourly means kept far longer than the raw points (optional: EST_DOWNSAMPLE=false skips it).
downsampled_id=""
if [ "${EST_DOWNSAMPLE:-true}" = "true" ]; then
  downsampled_id=$(influx bucket create --name "$DOWNSAMPLED_BUCKET" --org-id "$DOCKER_INFLUXDB_INIT_ORG_ID" \
    --retention "$DOWNSAMPLED_RETENTION" --hide-headers | cut -f1)
  influx task create --org-id "$DOCKER_INFLUXDB_INIT_ORG_ID" --file /opt/est/tasks/downsample-telemetry.flux >/dev/null
fi

# `influx auth create` prints: ID, description, token, user name, user ID, permissions.
create_token() {
  local file="$1" description="$2"
  shift 2
  local dir="$TOKENS_DIR/${file%.token}"
  influx auth create --org-id "$DOCKER_INFLUXDB_INIT_ORG_ID" --description "$description" --hide-headers "$@" \
    | cut -f3 > "$dir/$file.tmp"
  test -s "$dir/$file.tmp"
  mv "$dir/$file.tmp" "$dir/$file"
}

create_token ingest.token "ingest: write telemetry" --write-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID"
create_token telegraf.token "telegraf: write telemetry" --write-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID"
if [ -n "$downsampled_id" ]; then
  create_token grafana.token "grafana: read telemetry" --read-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID" --read-bucket "$downsampled_id"
else
  create_token grafana.token "grafana: read telemetry" --read-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID"
fi

# Readable by the one service user that mounts each volume (grafana 472, node 1000, telegraf 999);
# a token volume holds only that service's token.
chmod 0444 "$TOKENS_DIR"/*/*.token
chmod 0755 "$TOKENS_DIR" "$TOKENS_DIR"/*
echo "est: scoped tokens for ingest, telegraf and grafana created"
