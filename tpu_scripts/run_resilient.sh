#!/usr/bin/env bash
# A preemption-resilient run: launch, watch the queued resource, and after a preemption
# re-create the slice and relaunch the same command, which resumes from MODEL_DIR.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: run_resilient.sh --name=NAME --accelerator_type=TYPE --bucket=gs://BUCKET \
         --repo_url=URL --commit=SHA [flags] -- GECKO_TRAIN_ARGS...

For a slice made by create.sh and prepared by setup.sh: runs launch.sh and, while it
runs, checks the queued resource's state every --poll_interval seconds. When the state
is PREEMPTED, SUSPENDING or SUSPENDED, or gecko-train exits with 75 (preempted, its
checkpoint saved), it deletes the queued resource, creates it again (create.sh, same
flags), sets the workers up again (setup.sh) and relaunches the same command with the
same MODEL_DIR: gecko-train resumes from the newest complete checkpoint there. At most
--max_restarts times. gecko-train's own failures (exit 1, 2) and an interrupt (130) are
never restarted.

MODEL_DIR must be given on the command line (--gin.MODEL_DIR="'gs://...'") and be on
gs://: a re-created slice starts with empty disks.

Flags (--flag=value or --flag value); those of create.sh, setup.sh and launch.sh:
  --project=ID --zone=ZONE --name=NAME --accelerator_type=TYPE --runtime_version=V
  --node_count=N --spot --reserved --valid_until_duration=D       (create.sh)
  --repo_url=URL --commit=SHA --jax_requirement=R --gin_from=GCS_DIR (setup.sh; the
                            local gin files among GECKO_TRAIN_ARGS are copied)
  --bucket=gs://BUCKET --log_dir=DIR --coordinator_address=IP     (launch.sh)
and its own:
  --max_restarts=N          re-creations allowed (default 3)
  --poll_interval=SECONDS   seconds between state checks (default 60)
  -h, --help                this help

DRY_RUN=1 prints the commands of the first launch and of one restart.
Exit: gecko-train's final code (0 finished; 1, 2 its failures; 130 interrupted); 75 when
the restarts ran out; 2 for bad input; another code when launch.sh failed otherwise.
EOF
}

NAME=""
PROJECT_FLAGS=()
LAUNCH_PID=""

main() {
  local project zone name max_restarts=3 poll_interval=60 value
  local create_flags=() setup_flags=() launch_flags=() train_args=()
  use_common_flags project zone name
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --max_restarts | --max_restarts=*) take_value max_restarts "$@"; shift "$SHIFT_BY" ;;
      --poll_interval | --poll_interval=*) take_value poll_interval "$@"; shift "$SHIFT_BY" ;;
      --accelerator_type | --accelerator_type=* | --node_count | --node_count=*)
        take_value value "$@"
        create_flags+=("${1%%=*}=$value")
        launch_flags+=("${1%%=*}=$value")
        [[ $1 == --node_count* ]] && setup_flags+=("--node_count=$value")
        shift "$SHIFT_BY"
        ;;
      --runtime_version | --runtime_version=* | --valid_until_duration | --valid_until_duration=*)
        take_value value "$@"
        create_flags+=("${1%%=*}=$value")
        shift "$SHIFT_BY"
        ;;
      --spot | --reserved) create_flags+=("$1"); shift ;;
      --repo_url | --repo_url=* | --commit | --commit=* | --jax_requirement | --jax_requirement=* | --gin_from | --gin_from=*)
        take_value value "$@"
        setup_flags+=("${1%%=*}=$value")
        shift "$SHIFT_BY"
        ;;
      --bucket | --bucket=* | --log_dir | --log_dir=* | --coordinator_address | --coordinator_address=*)
        take_value value "$@"
        launch_flags+=("${1%%=*}=$value")
        shift "$SHIFT_BY"
        ;;
      --) train_args=("${@:2}"); break ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done

  require_common_flags
  require_int --max_restarts "$max_restarts" 0
  require_int --poll_interval "$poll_interval" 0
  ((${#train_args[@]})) || die "no gecko-train arguments: add them after '--'"
  local model_dir
  model_dir=$(gin_model_dir "${train_args[@]}")
  [[ -n $model_dir ]] ||
    die "a resilient run needs MODEL_DIR on the command line: add --gin.MODEL_DIR=\"'gs://BUCKET/DIR'\""
  [[ $model_dir == gs://* ]] ||
    die "MODEL_DIR '$model_dir' is not on gs://: a re-created slice starts with empty disks, so the run could not resume"
  NAME=$name
  PROJECT_FLAGS=("--project=$project" "--zone=$zone" "--name=$name")
  create_flags=("${PROJECT_FLAGS[@]}" "${create_flags[@]}" "--poll_interval=$poll_interval")
  local file kind
  while IFS= read -r file; do
    kind=$(gin_file_kind "$file")
    if [[ $kind == local ]]; then setup_flags+=("--gin_file=$file"); fi
  done < <(gin_files_in "${train_args[@]}")
  setup_flags=("${PROJECT_FLAGS[@]}" "${setup_flags[@]}")
  launch_flags=("${PROJECT_FLAGS[@]}" "${launch_flags[@]}")

  # Every check the three steps make, before anything runs.
  check_step "$TPU_SCRIPTS_DIR/create.sh" "${create_flags[@]}"
  check_step "$TPU_SCRIPTS_DIR/setup.sh" "${setup_flags[@]}"
  check_step "$TPU_SCRIPTS_DIR/launch.sh" "${launch_flags[@]}" -- "${train_args[@]}"

  if dry_run; then
    "$TPU_SCRIPTS_DIR/launch.sh" "${launch_flags[@]}" --attempt=0 -- "${train_args[@]}"
    queue_state >/dev/null
    printf '# on PREEMPTED, SUSPENDING or SUSPENDED, or exit %s (at most %s times):\n' \
      "$EXIT_PREEMPTED" "$max_restarts" >&3
    recreate "${create_flags[@]}" -- "${setup_flags[@]}"
    "$TPU_SCRIPTS_DIR/launch.sh" "${launch_flags[@]}" --attempt=1 -- "${train_args[@]}"
    return 0
  fi

  trap on_signal INT TERM
  log "MODEL_DIR $model_dir; restarts allowed: $max_restarts"
  local attempt=0 code
  while true; do
    code=0
    launch_and_watch "$attempt" "$poll_interval" "${launch_flags[@]}" -- "${train_args[@]}" || code=$?
    case $code in
      "$EXIT_FINISHED")
        log "gecko-train finished"
        return 0
        ;;
      "$EXIT_FAILED" | "$EXIT_USAGE")
        log "gecko-train failed by its own fault (exit $code): not restarting; MODEL_DIR keeps its last checkpoint"
        return "$code"
        ;;
      "$EXIT_INTERRUPTED")
        log "gecko-train was interrupted (exit $code): not restarting"
        return "$code"
        ;;
      "$EXIT_PREEMPTED") ;;
      *)
        local state
        state=$(queue_state)
        if [[ ! $state =~ ^(PREEMPTED|SUSPENDING|SUSPENDED)$ ]]; then
          log "launch failed with exit code $code while the queued resource is ${state:-unknown}: not restarting"
          return "$code"
        fi
        ;;
    esac
    if ((attempt >= max_restarts)); then
      log "preempted again after $attempt restart(s): giving up (--max_restarts=$max_restarts); rerun to resume from $model_dir"
      return "$EXIT_PREEMPTED"
    fi
    attempt=$((attempt + 1))
    log "preempted: re-creating '$NAME' (restart $attempt of $max_restarts)"
    recreate "${create_flags[@]}" -- "${setup_flags[@]}"
  done
}

# Runs a step with DRY_RUN=1 for its checks only; its error (if any) is shown.
check_step() {
  local errors code=0
  errors=$(DRY_RUN=1 "$@" 2>&1 >/dev/null 3>&-) || code=$?
  if ((code)); then
    printf '%s\n' "$errors" | grep -v '^\[' >&2
    exit "$code"
  fi
}

# The queued resource's state (PREEMPTED etc.), or empty when it cannot be read.
queue_state() {
  query ACTIVE gcloud compute tpus queued-resources describe "$NAME" "${PROJECT_FLAGS[@]:0:2}" \
    '--format=value(state.state)' 2>/dev/null || true
}

# Runs launch.sh in the background and polls the state; returns launch.sh's exit code,
# or 75 when the slice was preempted under it. Arguments: attempt, poll interval, then
# launch.sh's flags -- gecko-train's arguments.
launch_and_watch() {
  local attempt=$1 poll_interval=$2 state code=0
  shift 2
  log "launch, attempt $attempt"
  "$TPU_SCRIPTS_DIR/launch.sh" "--attempt=$attempt" "$@" 3>&- &
  LAUNCH_PID=$!
  while kill -0 "$LAUNCH_PID" 2>/dev/null; do
    sleep "$poll_interval"
    kill -0 "$LAUNCH_PID" 2>/dev/null || break
    state=$(queue_state)
    case $state in
      PREEMPTED | SUSPENDING | SUSPENDED)
        log "queued resource '$NAME' is $state: stopping this launch"
        kill -TERM "$LAUNCH_PID" 2>/dev/null || true
        wait "$LAUNCH_PID" || true
        LAUNCH_PID=""
        return "$EXIT_PREEMPTED"
        ;;
    esac
  done
  wait "$LAUNCH_PID" || code=$?
  LAUNCH_PID=""
  return "$code"
}

# delete.sh --wait, create.sh, setup.sh. Arguments: create flags -- setup flags.
recreate() {
  local create=()
  while [[ $1 != -- ]]; do
    create+=("$1")
    shift
  done
  shift
  "$TPU_SCRIPTS_DIR/delete.sh" "${PROJECT_FLAGS[@]}" --wait
  "$TPU_SCRIPTS_DIR/create.sh" "${create[@]}"
  "$TPU_SCRIPTS_DIR/setup.sh" "$@"
}

on_signal() {
  if [[ -n $LAUNCH_PID ]]; then
    kill -TERM "$LAUNCH_PID" 2>/dev/null || true
    wait "$LAUNCH_PID" 2>/dev/null || true
  fi
  log "stopped; the queued resource '$NAME' is left as it is (stop.sh, delete.sh)"
  exit "$EXIT_INTERRUPTED"
}

main "$@"
