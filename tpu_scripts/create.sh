#!/usr/bin/env bash
# Creates a TPU VM or pod slice (or N slices: multislice) through a queued resource and
# waits until it is ACTIVE.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: create.sh --name=NAME --accelerator_type=TYPE [flags]

Requests a TPU slice through a queued resource (gcloud compute tpus queued-resources
create) and waits until the queued resource is ACTIVE. The queued resource is NAME; its
node is NAME, or NAME-0 .. NAME-(N-1) with --node_count=N (multislice).

Flags (--flag=value or --flag value):
  --project=ID              Google Cloud project (default: $PROJECT)
  --zone=ZONE               zone that offers the generation (default: $ZONE)
  --name=NAME               queued resource and node name (default: $TPU_NAME)
  --accelerator_type=TYPE   v4-8 .. v4-4096, v5p-8 .., v5litepod-1 .. v5litepod-256,
                            v6e-1 .. v6e-256 (default: $ACCELERATOR_TYPE)
  --runtime_version=V       TPU software version (default: the one for the generation:
                            v4 tpu-ubuntu2204-base, v5p v2-alpha-tpuv5,
                            v5e v2-alpha-tpuv5-lite, v6e v2-alpha-tpuv6e)
  --node_count=N            slices (multislice when N > 1; default 1)
  --spot                    Spot capacity (may be preempted)
  --reserved                capacity from the project's reservation
  --valid_until_duration=D  give up on the request after D (e.g. 6h)
  --poll_interval=SECONDS   seconds between state checks (default 30)
  --no_wait                 return once the request is queued
  -h, --help                this help

DRY_RUN=1 prints the gcloud commands instead of running them.
Exit: 0 ACTIVE (or queued with --no_wait); 1 FAILED or SUSPENDED; 2 bad input.
EOF
}

main() {
  local project zone name accelerator_type node_count
  local runtime_version="" spot=0 reserved=0 valid_until="" poll_interval=30 wait=1
  use_common_flags project zone name accelerator_type node_count
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --runtime_version | --runtime_version=*) take_value runtime_version "$@"; shift "$SHIFT_BY" ;;
      --valid_until_duration | --valid_until_duration=*) take_value valid_until "$@"; shift "$SHIFT_BY" ;;
      --poll_interval | --poll_interval=*) take_value poll_interval "$@"; shift "$SHIFT_BY" ;;
      --spot) spot=1; shift ;;
      --reserved) reserved=1; shift ;;
      --no_wait) wait=0; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done

  require_common_flags
  require_int --poll_interval "$poll_interval" 0
  ((spot + reserved < 2)) || die "--spot and --reserved exclude each other"
  [[ -z $valid_until || $valid_until =~ ^[0-9]+[smhd]$ ]] ||
    die "--valid_until_duration '$valid_until' must be a number with s, m, h or d (e.g. 6h)"
  local gen
  gen=$(generation_of "$accelerator_type") # known: checked above
  runtime_version=${runtime_version:-$(runtime_version_for "$gen")}

  local cmd=(gcloud compute tpus queued-resources create "$name"
    "--project=$project" "--zone=$zone"
    "--accelerator-type=$accelerator_type" "--runtime-version=$runtime_version")
  if ((node_count == 1)); then
    cmd+=("--node-id=$name")
  else
    cmd+=("--node-count=$node_count" "--node-prefix=$name")
  fi
  ((spot)) && cmd+=(--spot)
  ((reserved)) && cmd+=(--reserved)
  [[ -n $valid_until ]] && cmd+=("--valid-until-duration=$valid_until")

  log "requesting $node_count x $accelerator_type ($gen, $runtime_version) as '$name' in $zone"
  run "${cmd[@]}"
  ((wait)) || return 0
  wait_until_active "$project" "$zone" "$name" "$poll_interval"
}

# Polls the queued resource's state until ACTIVE; FAILED and SUSPENDED end the wait.
wait_until_active() {
  local project=$1 zone=$2 name=$3 poll_interval=$4 state previous=""
  while true; do
    state=$(query ACTIVE gcloud compute tpus queued-resources describe "$name" \
      "--project=$project" "--zone=$zone" '--format=value(state.state)')
    [[ $state != "$previous" ]] && log "queued resource '$name': ${state:-(no state yet)}"
    previous=$state
    case $state in
      ACTIVE | READY) return 0 ;;
      FAILED)
        fail "queued resource '$name' FAILED: see 'gcloud compute tpus queued-resources describe $name --project=$project --zone=$zone'; delete it with delete.sh before retrying"
        ;;
      SUSPENDING | SUSPENDED)
        fail "queued resource '$name' is $state (its capacity was reclaimed); delete it with delete.sh and create it again"
        ;;
    esac
    sleep "$poll_interval"
  done
}

main "$@"
