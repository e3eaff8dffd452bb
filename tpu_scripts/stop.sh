#!/usr/bin/env bash
# Stops gecko-train on every worker.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: stop.sh --name=NAME [flags]

Sends SIGTERM to gecko-train on all workers of every slice (--worker=all): the trainer
saves a checkpoint and exits with code 75, so the same command resumes later. With
--force it is killed (SIGKILL, no checkpoint) and the libtpu lockfile removed.

Flags (--flag=value or --flag value):
  --project=ID     Google Cloud project (default: $PROJECT)
  --zone=ZONE      zone (default: $ZONE)
  --name=NAME      TPU name (default: $TPU_NAME)
  --node_count=N   slices (default 1)
  --force          SIGKILL instead of SIGTERM
  -h, --help       this help

DRY_RUN=1 prints the gcloud commands instead of running them.
USAGE
}

main() {
  local project zone name node_count force=0
  use_common_flags project zone name node_count
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --force) force=1; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done
  require_common_flags
  # Matches the trainer's own process (python3 .../bin/gecko-train ...), not the shell that
  # launched it, which still has to report the exit code; the [g] keeps pkill from
  # matching the shell that runs this command.
  local command='pkill -TERM -f "/[g]ecko-train" || echo "no gecko-train running"'
  if ((force)); then
    command='pkill -KILL -f "/[g]ecko-train" || echo "no gecko-train running"; sudo rm -f /tmp/libtpu_lockfile'
  fi
  local node
  while IFS= read -r node; do
    run gcloud compute tpus tpu-vm ssh "$node" "--project=$project" "--zone=$zone" --worker=all "--command=$command"
  done < <(node_names "$name" "$node_count")
}

main "$@"
