#!/usr/bin/env bash
# Shows a queued resource's state and, with --processes, gecko-train on each worker.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: status.sh --name=NAME [flags]

Describes the queued resource NAME (state: WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE,
SUSPENDING, SUSPENDED, FAILED, ...). With --processes also lists the gecko-train
processes on all workers of every slice.

Flags (--flag=value or --flag value):
  --project=ID     Google Cloud project (default: $PROJECT)
  --zone=ZONE      zone (default: $ZONE)
  --name=NAME      TPU name (default: $TPU_NAME)
  --node_count=N   slices (default 1)
  --processes      list gecko-train on the workers (ssh --worker=all)
  -h, --help       this help

DRY_RUN=1 prints the gcloud commands instead of running them.
USAGE
}

main() {
  local project zone name node_count processes=0
  use_common_flags project zone name node_count
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --processes) processes=1; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done
  require_common_flags
  run gcloud compute tpus queued-resources describe "$name" "--project=$project" "--zone=$zone" \
    '--format=yaml(name,state,tpu.nodeSpec[].nodeId,tpu.nodeSpec[].node.acceleratorType)'
  ((processes)) || return 0
  local node
  while IFS= read -r node; do
    # shellcheck disable=SC2016 # expanded on the worker
    run gcloud compute tpus tpu-vm ssh "$node" "--project=$project" "--zone=$zone" --worker=all \
      '--command=echo "$(hostname): $(pgrep -af "/[g]ecko-train" || echo "no gecko-train")"'
  done < <(node_names "$name" "$node_count")
}

main "$@"
