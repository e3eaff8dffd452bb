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
  local project zone name="${TPU_NAME:-}" wait=0
  project=$(default_project)
  zone=$(default_zone)
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --project | --project=*) take_value project "$@"; shift "$SHIFT_BY" ;;
      --zone | --zone=*) take_value zone "$@"; shift "$SHIFT_BY" ;;
      --name | --name=*) take_value name "$@"; shift "$SHIFT_BY" ;;
      --wait) wait=1; shift ;;
      *) unknown_flag "$1" ;;
    esac
  done
  require_project "$project"
  require_zone "$zone"
  require_name "$name"
  local cmd=(gcloud compute tpus queued-resources delete "$name" "--project=$project" "--zone=$zone" --force --quiet)
  ((wait)) || cmd+=(--async)
  log "deleting queued resource '$name'"
  run "${cmd[@]}"
}

main "$@"
