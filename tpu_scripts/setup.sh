#!/usr/bin/env bash
# Prepares every worker of a slice for a launch: installs gecko_jax at a pinned commit with
# jax[tpu], brings the gin files, frees the TPU from stale processes.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: setup.sh --name=NAME --repo_url=URL --commit=SHA [--gin_file=FILE ...] [flags]
       setup.sh --name=NAME --clean_only

On every worker of every slice (--worker=all):
  1. installs gecko_jax from URL at commit SHA with jax[tpu] (pip, user site);
  2. copies each local --gin_file to ~/gecko_run/FILE (gcloud ... scp --worker=all), and
     with --gin_from=gs://BUCKET/DIR copies that directory into ~/gecko_run (gsutil);
     the packaged gin files (runs/..., models/...) ship with the package;
  3. kills stale processes holding the TPU (/dev/accel*, /dev/vfio/*) and removes the
     libtpu lockfile (/tmp/libtpu_lockfile), so that the next launch can open the chips.

Flags (--flag=value or --flag value):
  --project=ID         Google Cloud project (default: $PROJECT)
  --zone=ZONE          zone (default: $ZONE)
  --name=NAME          TPU name given to create.sh (default: $TPU_NAME)
  --node_count=N       slices of a multislice resource (default 1)
  --repo_url=URL       git URL of gecko_jax (default: $GECKO_REPO_URL)
  --commit=SHA         commit to install, 7 to 40 hex digits (default: $GECKO_COMMIT)
  --jax_requirement=R  the JAX requirement installed with it (default 'jax[tpu]')
  --gin_file=FILE      a gin file of the run, relative to the current directory (repeatable)
  --gin_from=GCS_DIR   a gs:// directory of gin files, copied into ~/gecko_run
  --clean_only         only step 3
  -h, --help           this help

DRY_RUN=1 prints the gcloud commands instead of running them.
EOF
}

# Kills whatever holds the TPU devices, then removes libtpu's lockfile. Runs on a worker.
# shellcheck disable=SC2016 # expanded on the worker, not here
CLEAN_TPU_COMMAND='pids=$(sudo lsof -t /dev/accel* /dev/vfio/[0-9]* 2>/dev/null | sort -u); if [ -n "$pids" ]; then echo "killing stale TPU processes: $pids"; sudo kill -9 $pids; fi; sudo rm -f /tmp/libtpu_lockfile'

main() {
  local project zone name node_count repo_url="${GECKO_REPO_URL:-}" commit="${GECKO_COMMIT:-}"
  local jax_requirement='jax[tpu]' gin_from="" clean_only=0 gin_files=() value
  use_common_flags project zone name node_count
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --repo_url | --repo_url=*) take_value repo_url "$@"; shift "$SHIFT_BY" ;;
      --commit | --commit=*) take_value commit "$@"; shift "$SHIFT_BY" ;;
      --jax_requirement | --jax_requirement=*) take_value jax_requirement "$@"; shift "$SHIFT_BY" ;;
      --gin_from | --gin_from=*) take_value gin_from "$@"; shift "$SHIFT_BY" ;;
      --gin_file | --gin_file=*)
        take_value value "$@"
        shift "$SHIFT_BY"
        gin_files+=("$value")
        ;;
      --clean_only) clean_only=1; shift ;;
      *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;;
    esac
  done

  require_common_flags
  local local_gin=() file kind
  if ((!clean_only)); then
    [[ -n $repo_url ]] || die "missing --repo_url (the git URL of gecko_jax, or set \$GECKO_REPO_URL)"
    [[ $commit =~ ^[0-9a-f]{7,40}$ ]] ||
      die "--commit must pin a commit (7 to 40 hex digits), got '${commit}'"
    [[ -z $gin_from || $gin_from == gs://* ]] || die "--gin_from '$gin_from' must be a gs:// directory"
    for file in "${gin_files[@]}"; do
      kind=$(gin_file_kind "$file")
      if [[ $kind == local ]]; then local_gin+=("$file"); fi
    done
  fi

  local node ssh=(gcloud compute tpus tpu-vm ssh) where=("--project=$project" "--zone=$zone")
  while IFS= read -r node; do
    if ((!clean_only)); then
      run "${ssh[@]}" "$node" "${where[@]}" --worker=all "--command=$(install_command "$repo_url" "$commit" "$jax_requirement" "${local_gin[@]}")"
      for file in "${local_gin[@]}"; do
        run gcloud compute tpus tpu-vm scp "$file" "$node:$REMOTE_DIR/$file" "${where[@]}" --worker=all
      done
      if [[ -n $gin_from ]]; then
        run "${ssh[@]}" "$node" "${where[@]}" --worker=all \
          "--command=gsutil -m cp -r $(shell_quote "${gin_from%/}/*") $REMOTE_DIR/"
      fi
    fi
    run "${ssh[@]}" "$node" "${where[@]}" --worker=all "--command=$CLEAN_TPU_COMMAND"
  done < <(node_names "$name" "$node_count")
  log "workers of '$name' are ready"
}

# pip install of the pinned package and JAX, and the directories the gin files go to.
install_command() {
  local repo_url=$1 commit=$2 jax_requirement=$3
  shift 3
  local dirs=("$REMOTE_DIR/logs") file
  for file in "$@"; do
    [[ $file == */* ]] && dirs+=("$REMOTE_DIR/${file%/*}")
  done
  printf '%s' "python3 -m pip install --user --upgrade $(shell_quote "$jax_requirement" "gecko_jax @ git+$repo_url@$commit") && mkdir -p $(shell_quote "${dirs[@]}")"
}

main "$@"
