#!/usr/bin/env bash
# Runs gecko-train on every worker of every slice at once and reports its exit code.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: launch.sh --name=NAME --accelerator_type=TYPE --bucket=gs://BUCKET [flags] \
         -- GECKO_TRAIN_ARGS...

Starts `gecko-train GECKO_TRAIN_ARGS...` on all workers at once (gcloud compute tpus
tpu-vm ssh --worker=all; a launch on fewer hosts hangs JAX start-up on a pod), in
~/gecko_run on each worker, so gin files copied there by setup.sh are found by the same
relative names. Every argument after `--` reaches gecko-train unchanged, quotes and
spaces included, e.g. --gin.MODEL_DIR="'gs://bucket/run 1'".

Each worker writes its log to ~/gecko_run/logs/gecko-train.log and copies it to
gs://BUCKET/tpu_logs/NAME/attempt-K/slice-S-worker-W.log; worker 0 (of slice 0) is shown
here and everything shown is also written to LOG_DIR/NAME/attempt-K.log. When a worker
fails, the launch stops at once, names the worker and stops the trainer on the others.

Flags (--flag=value or --flag value):
  --project=ID              Google Cloud project (default: $PROJECT)
  --zone=ZONE               zone (default: $ZONE)
  --name=NAME               TPU name given to create.sh (default: $TPU_NAME)
  --accelerator_type=TYPE   the slice's type, e.g. v4-64 (default: $ACCELERATOR_TYPE)
  --node_count=N            slices (multislice when N > 1; default 1)
  --bucket=gs://BUCKET      where the workers' logs are copied (default: $BUCKET)
  --attempt=K               attempt number in log names (default 0; run_resilient.sh
                            counts restarts with it)
  --log_dir=DIR             local log directory (default ./tpu_logs)
  --coordinator_address=IP  multislice: MEGASCALE_COORDINATOR_ADDRESS where the platform
                            does not set it (default: looked up, worker 0 of NAME-0)
  --megascale_port=PORT     multislice: MEGASCALE_PORT where not set (default 8080)
  -h, --help                this help

DRY_RUN=1 prints the gcloud commands instead of running them.
Exit: gecko-train's code: 0 finished, 75 preempted (rerun the same command: it resumes
from MODEL_DIR), 130 interrupted, 1 failed, 2 bad arguments; 2 also for bad input here;
another code when a worker could not be reached (ssh's code).
EOF
}

STATUS_DIR=""

main() {
  local project zone name accelerator_type node_count bucket attempt
  local log_dir=tpu_logs coordinator="" megascale_port=8080 train_args=()
  use_common_flags project zone name accelerator_type node_count bucket attempt
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --log_dir | --log_dir=*) take_value log_dir "$@"; shift "$SHIFT_BY" ;;
      --coordinator_address | --coordinator_address=*) take_value coordinator "$@"; shift "$SHIFT_BY" ;;
      --megascale_port | --megascale_port=*) take_value megascale_port "$@"; shift "$SHIFT_BY" ;;
      --) train_args=("${@:2}"); break ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done

  local hosts
  require_common_flags
  require_int --attempt "$attempt" 0
  require_int --megascale_port "$megascale_port" 1
  bucket=$(normalize_bucket "$bucket")
  ((${#train_args[@]})) || die "no gecko-train arguments: add them after '--', e.g. -- --gin_file=runs/finetune.gin ..."
  check_gin_files "${train_args[@]}"
  hosts=$(hosts_per_slice "$accelerator_type")
  if ((hosts * node_count > 1)); then
    check_model_dir_for_pod "$(gin_model_dir "${train_args[@]}")" \
      "a run on $node_count x $accelerator_type ($((hosts * node_count)) hosts)"
  fi

  local nodes=() where=("--project=$project" "--zone=$zone")
  mapfile -t nodes < <(node_names "$name" "$node_count")
  if ((node_count > 1)) && [[ -z $coordinator ]]; then
    coordinator=$(query "${nodes[0]}-worker-0-ip" gcloud compute tpus tpu-vm describe "${nodes[0]}" \
      "${where[@]}" '--format=value(networkEndpoints[0].ipAddress)')
    [[ -n $coordinator ]] || fail "could not find the address of worker 0 of ${nodes[0]}; pass --coordinator_address"
  fi

  local gcs_log_dir="$bucket/tpu_logs/$name/attempt-$attempt" slice cmds=()
  for slice in "${!nodes[@]}"; do
    local megascale=""
    if ((node_count > 1)); then
      megascale=$(megascale_exports "$coordinator" "$node_count" "$slice" "$megascale_port")
    fi
    cmds[slice]=$(remote_command "$slice" "$gcs_log_dir" "$megascale" "${train_args[@]}")
  done

  if dry_run; then
    for slice in "${!nodes[@]}"; do
      run gcloud compute tpus tpu-vm ssh "${nodes[slice]}" "${where[@]}" --worker=all "--command=${cmds[slice]}"
    done
    return 0
  fi

  mkdir -p "$log_dir/$name"
  local local_log="$log_dir/$name/attempt-$attempt.log"
  : >"$local_log"
  STATUS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gecko-launch.XXXXXX")
  trap 'rm -rf "$STATUS_DIR"' EXIT
  trap 'on_signal 143' TERM
  trap 'on_signal 130' INT
  log "gecko-train on ${#nodes[@]} x $accelerator_type ($hosts host(s) each); log: $local_log, workers' logs: $gcs_log_dir/"
  for slice in "${!nodes[@]}"; do
    start_ssh "$slice" "$local_log" gcloud compute tpus tpu-vm ssh "${nodes[slice]}" "${where[@]}" \
      --worker=all "--command=${cmds[slice]}"
  done
  local code=0
  collect "${#nodes[@]}" "$((hosts * node_count))" "$gcs_log_dir" || code=$?
  if ((code != 0 && code != EXIT_PREEMPTED)) && [[ -f $STATUS_DIR/stop-others ]]; then
    log "stopping gecko-train on the other workers"
    for slice in "${!nodes[@]}"; do
      gcloud compute tpus tpu-vm ssh "${nodes[slice]}" "${where[@]}" --worker=all \
        "--command=$STOP_TRAINER_COMMAND" 3>&- >/dev/null 2>&1 || true
    done
  fi
  report "$code"
  return "$code"
}

# shellcheck disable=SC2016 # expanded on the worker
STOP_TRAINER_COMMAND='pkill -TERM -f "/[g]ecko-train" || true'

megascale_exports() {
  local address=$1 slices=$2 slice=$3 port=$4
  # shellcheck disable=SC2016 # the worker's own MEGASCALE_* win
  printf 'export MEGASCALE_COORDINATOR_ADDRESS="${MEGASCALE_COORDINATOR_ADDRESS:-%s}" MEGASCALE_NUM_SLICES="${MEGASCALE_NUM_SLICES:-%s}" MEGASCALE_SLICE_ID="${MEGASCALE_SLICE_ID:-%s}" MEGASCALE_PORT="${MEGASCALE_PORT:-%s}"; ' \
    "$(shell_quote "$address")" "$slices" "$slice" "$port"
}

# The command each worker runs (one line, POSIX sh): gecko-train in ~/gecko_run with its
# output in a log file (and on stdout for worker 0 of slice 0), the log copied to
# gs://, then a last line `GECKO_EXIT slice=S worker=W code=C` that launch.sh reads.
remote_command() {
  local slice=$1 gcs_log_dir=$2 megascale=$3
  shift 3
  local train gcs_log
  train="gecko-train $(shell_quote "$@")"
  gcs_log="$(shell_quote "$gcs_log_dir/slice-$slice-worker-")\$w.log"
  # shellcheck disable=SC2016 # $HOME, $w, $? and $rc are the worker's
  local prologue='export PATH="$HOME/.local/bin:$PATH"; cd "$HOME/'"$REMOTE_DIR"'" && mkdir -p logs || exit 1; w="${TPU_WORKER_ID:-$(curl -sf -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number)}"; '
  local quiet="$train >$REMOTE_LOG 2>&1; echo \$? >logs/rc"
  local body
  if ((slice == 0)); then
    body="if [ \"\$w\" = 0 ]; then { $train 2>&1; echo \$? >logs/rc; } | tee $REMOTE_LOG; else $quiet; fi; "
  else
    body="$quiet; "
  fi
  # shellcheck disable=SC2016
  local epilogue='rc=$(cat logs/rc); if [ "$rc" != 0 ] && [ "$w" != 0 ]; then tail -n 20 '"$REMOTE_LOG"' | sed "s/^/[worker $w] /"; fi; gsutil -q cp '"$REMOTE_LOG $gcs_log"' || echo "worker $w: could not copy its log to gs://" >&2; echo "GECKO_EXIT slice='"$slice"' worker=$w code=$rc"; exit "$rc"'
  printf '%s' "$prologue$megascale$body$epilogue"
}

# Starts one ssh in the background; its output goes through relay_output, its pid and
# then its exit code land in STATUS_DIR.
start_ssh() {
  local slice=$1 local_log=$2
  shift 2
  (
    "$@" > >(relay_output "$slice" "$local_log") 2>&1 3>&- &
    pid=$!
    echo "$pid" >"$STATUS_DIR/pid-$slice"
    rc=0
    wait "$pid" || rc=$?
    # The directory is gone when the launch was stopped meanwhile.
    echo "$rc" 2>/dev/null >"$STATUS_DIR/ssh-$slice" || true
  ) &
}

# Shows and logs one slice's output; the workers' exit lines become status files.
relay_output() {
  local slice=$1 local_log=$2 line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" 2>/dev/null >>"$local_log" || true
    if [[ $line =~ ^GECKO_EXIT\ slice=([0-9]+)\ worker=([0-9]+)\ code=([0-9]+)$ ]]; then
      echo "${BASH_REMATCH[3]}" 2>/dev/null >"$STATUS_DIR/exit-${BASH_REMATCH[1]}-${BASH_REMATCH[2]}" || true
    else
      printf '%s\n' "$line"
    fi
  done
  : 2>/dev/null >"$STATUS_DIR/done-$slice" || true
}

# Waits for every slice; returns the run's exit code. The first worker that exits with
# a non-zero code ends the wait (fail fast): the others would wait for it forever.
collect() {
  local slices=$1 workers=$2 gcs_log_dir=$3 file code slice finished reported
  while true; do
    for file in "$STATUS_DIR"/exit-*; do
      [[ -e $file ]] || continue
      code=$(<"$file")
      if ((code != 0)); then
        local id=${file##*/exit-}
        log "worker ${id#*-} of slice ${id%%-*}: gecko-train exited with code $code ($(describe_code "$code")); its log: $gcs_log_dir/slice-${id%%-*}-worker-${id#*-}.log"
        reported=$(find "$STATUS_DIR" -name 'exit-*' | wc -l)
        ((reported < workers)) && : >"$STATUS_DIR/stop-others"
        kill_ssh
        return "$code"
      fi
    done
    finished=0
    for ((slice = 0; slice < slices; slice++)); do
      [[ -e $STATUS_DIR/ssh-$slice && -e $STATUS_DIR/done-$slice ]] && finished=$((finished + 1))
    done
    ((finished == slices)) && break
    sleep 0.1
  done
  reported=$(find "$STATUS_DIR" -name 'exit-*' | wc -l)
  ((reported == workers)) && return 0
  for ((slice = 0; slice < slices; slice++)); do
    code=$(<"$STATUS_DIR/ssh-$slice")
    if ((code != 0)); then
      log "ssh to slice $slice ended with code $code before every worker reported ($reported of $workers did)"
      return "$code"
    fi
  done
  log "only $reported of $workers workers reported an exit code"
  return "$EXIT_FAILED"
}

describe_code() {
  case $1 in
    "$EXIT_FINISHED") echo finished ;;
    "$EXIT_FAILED") echo "failed: not restarted" ;;
    "$EXIT_USAGE") echo "bad arguments or files: not restarted" ;;
    "$EXIT_PREEMPTED") echo "preempted: checkpoint saved, rerun the same command to resume" ;;
    "$EXIT_INTERRUPTED") echo interrupted ;;
    *) echo "unexpected" ;;
  esac
}

report() {
  log "gecko-train exit code $1: $(describe_code "$1")"
}

kill_ssh() {
  local file
  for file in "$STATUS_DIR"/pid-*; do
    [[ -e $file ]] && kill "$(<"$file")" 2>/dev/null
  done
  return 0
}

on_signal() {
  kill_ssh
  log "launch stopped; gecko-train may still run on the workers: stop it with stop.sh"
  exit "$1"
}

main "$@"
