#!/usr/bin/env bash
# Shows a worker's gecko-train log, from the worker or from its copy in gs://.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: tail.sh --name=NAME [flags]

Prints the end of ~/gecko_run/logs/gecko-train.log on a worker (ssh --worker=W), or with
--gcs the copy launch.sh made in gs://BUCKET/tpu_logs/NAME/attempt-K/ (also readable
after the slice is gone).

Flags (--flag=value or --flag value):
  --project=ID     Google Cloud project (default: $PROJECT)
  --zone=ZONE      zone (default: $ZONE)
  --name=NAME      TPU name (default: $TPU_NAME)
  --node_count=N   slices (default 1)
  --slice=S        which slice (default 0)
  --worker=W       worker number, or 'all' (default 0)
  --lines=N        lines to show (default 100)
  --follow         keep following the log (tail -f)
  --gcs            print the whole copy in gs:// (needs --bucket; --worker must be a
                   number; --lines and --follow apply to the worker's file only)
  --bucket=gs://B  the bucket given to launch.sh (default: $BUCKET)
  --attempt=K      the attempt (default 0)
  -h, --help       this help

DRY_RUN=1 prints the gcloud / gsutil command instead of running it.
USAGE
}

main() {
  local project zone name node_count bucket attempt slice=0 worker=0 lines=100 follow=0 gcs=0
  use_common_flags project zone name node_count bucket attempt
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --slice | --slice=*) take_value slice "$@"; shift "$SHIFT_BY" ;;
      --worker | --worker=*) take_value worker "$@"; shift "$SHIFT_BY" ;;
      --lines | --lines=*) take_value lines "$@"; shift "$SHIFT_BY" ;;
      --follow) follow=1; shift ;;
      --gcs) gcs=1; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done
  # Not require_common_flags: the log's copy in gs:// needs no project or zone.
  require_name "$name"
  require_int --node_count "$node_count" 1
  require_int --slice "$slice" 0
  require_int --lines "$lines" 1
  ((slice < node_count)) || die "--slice=$slice but there are $node_count slice(s)"
  [[ $worker == all ]] || require_int --worker "$worker" 0
  if ((gcs)); then
    [[ $worker != all ]] || die "--gcs reads one worker's log: give --worker=N"
    require_int --attempt "$attempt" 0
    bucket=$(normalize_bucket "$bucket")
    run gsutil cat "$bucket/tpu_logs/$name/attempt-$attempt/slice-$slice-worker-$worker.log"
    return 0
  fi
  require_project "$project"
  require_zone "$zone"
  local nodes=() tail_cmd="tail -n $lines"
  mapfile -t nodes < <(node_names "$name" "$node_count")
  ((follow)) && tail_cmd+=" -F"
  run gcloud compute tpus tpu-vm ssh "${nodes[slice]}" "--project=$project" "--zone=$zone" \
    "--worker=$worker" "--command=$tail_cmd $REMOTE_DIR/$REMOTE_LOG"
}

main "$@"
