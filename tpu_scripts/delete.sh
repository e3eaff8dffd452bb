#!/usr/bin/env bash
# Deletes a queued resource and its slices, so that their quota is released.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: delete.sh --name=NAME [flags]

Deletes the queued resource NAME with all of its nodes (gcloud compute tpus
queued-resources delete --force --async): a preempted or suspended slice holds its
quota until its queued resource is deleted.

Flags (--flag=value or --flag value):
  --project=ID   Google Cloud project (default: $PROJECT)
  --zone=ZONE    zone (default: $ZONE)
  --name=NAME    queued resource name (default: $TPU_NAME)
  --wait         wait until it is gone (no --async), e.g. before creating it again
  -h, --help     this help

DRY_RUN=1 prints the gcloud command instead of running it.
USAGE
}

main() {
  local project zone name wait=0
  use_common_flags project zone name
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --wait) wait=1; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done
  require_common_flags
  local cmd=(gcloud compute tpus queued-resources delete "$name" "--project=$project" "--zone=$zone" --force --quiet)
  ((wait)) || cmd+=(--async)
  log "deleting queued resource '$name'"
  run "${cmd[@]}"
}

main "$@"
