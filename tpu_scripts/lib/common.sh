# shellcheck shell=bash
# shellcheck disable=SC2034 # the constants and SHIFT_BY are read by the sourcing scripts
# Shared by every script in tpu_scripts/: flag parsing, the run-or-print wrapper, the
# known TPU generations (accelerator types, runtime versions, zones) and the checks that
# run before anything is created. Sourced, never run.

# The caller's stdout, kept on fd 3 so that DRY_RUN prints reach the terminal even from
# inside a command substitution. Commands run with fd 3 closed.
exec 3>&1
# A failure inside $(...) stops the script too.
shopt -s inherit_errexit

SCRIPT_NAME=$(basename "$0")
TPU_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The gin files that ship in the package (found by gecko-train on every worker).
PACKAGED_GIN_DIR="$TPU_SCRIPTS_DIR/../gecko_jax/gin"
# Working directory of a run on every worker; local gin files are copied under it.
REMOTE_DIR=gecko_run
REMOTE_LOG=logs/gecko-train.log

# Exit codes of gecko-train (gecko_jax/exit_codes.py), relied on by launch and the watcher.
EXIT_FINISHED=0
EXIT_FAILED=1
EXIT_USAGE=2
EXIT_PREEMPTED=75
EXIT_INTERRUPTED=130

# ------------------------------------------------------------------ messages

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }

# Bad input: a message naming the flag or value, exit 2 (nothing was created).
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit "$EXIT_USAGE"
}

# A failure after input was accepted (a cloud operation failed): exit 1.
fail() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit "$EXIT_FAILED"
}

# ------------------------------------------------------------------ flags

# Reads the value of a flag given as `--flag=value` or `--flag value`. Usage, inside a
# `case "$1"` arm:  take_value VAR "$@"; shift "$SHIFT_BY"
take_value() {
  local var=$1 flag=$2
  if [[ $flag == *=* ]]; then
    printf -v "$var" '%s' "${flag#*=}"
    SHIFT_BY=1
  else
    (($# >= 3)) || die "$flag needs a value"
    printf -v "$var" '%s' "$3"
    SHIFT_BY=2
  fi
}

unknown_flag() { die "unknown flag '$1' (see $SCRIPT_NAME --help)"; }

require_int() {
  local flag=$1 value=$2 min=${3:-0}
  if [[ ! $value =~ ^[0-9]+$ ]] || ((value < min)); then
    die "$flag must be an integer >= $min, got '$value'"
  fi
}

# --project / --zone default to $PROJECT / $ZONE, then gcloud's own variables.
default_project() { printf '%s' "${PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}"; }
default_zone() { printf '%s' "${ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}"; }

require_project() {
  [[ -n $1 ]] || die "missing project: pass --project=PROJECT_ID (or set \$PROJECT)"
}

require_zone() {
  [[ -n $1 ]] || die "missing zone: pass --zone=ZONE (or set \$ZONE)"
}

require_name() {
  [[ -n $1 ]] || die "missing TPU name: pass --name=NAME (or set \$TPU_NAME)"
  [[ $1 =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "--name '$1' must be lower-case letters, digits and '-', starting with a letter"
}

# A bucket as gs://NAME (a bare NAME is accepted).
normalize_bucket() {
  local bucket=$1
  [[ -n $bucket ]] || die "missing bucket: pass --bucket=gs://BUCKET (or set \$BUCKET); logs are copied there"
  bucket=${bucket%/}
  [[ $bucket == gs://* ]] || bucket="gs://$bucket"
  [[ $bucket =~ ^gs://[a-z0-9][-a-z0-9_.]*[a-z0-9](/.*)?$ ]] || die "--bucket '$1' is not a bucket name"
  printf '%s' "$bucket"
}

# ------------------------------------------------------------------ common flags

# The flags several scripts share. Each is read into the calling function's variable of
# the same name (--node_count into node_count), which that function declares `local`:
#   local project zone name node_count
#   use_common_flags project zone name node_count
#   ... case $1 in ... *) common_flag "$@" || unknown_flag "$1"; shift "$SHIFT_BY" ;; esac
#   require_common_flags
# Only the common flags a script names are accepted; any other stays an unknown flag.
COMMON_FLAGS=()

# Names the common flags this script takes and gives their variables the defaults.
use_common_flags() {
  local common
  COMMON_FLAGS=("$@")
  for common in "$@"; do
    case $common in
      project) project=$(default_project) ;;
      zone) zone=$(default_zone) ;;
      name) name=${TPU_NAME:-} ;;
      accelerator_type) accelerator_type=${ACCELERATOR_TYPE:-} ;;
      node_count) node_count=1 ;;
      bucket) bucket=${BUCKET:-} ;;
      attempt) attempt=0 ;;
      *) fail "'$common' is not a common flag" ;;
    esac
  done
}

takes_common_flag() {
  local common
  for common in "${COMMON_FLAGS[@]}"; do
    [[ $common == "$1" ]] && return 0
  done
  return 1
}

# Reads one common flag (`--flag=value` or `--flag value`) into its variable and sets
# SHIFT_BY, as take_value does; returns 1 for any other argument.
common_flag() {
  local common=${1%%=*}
  [[ $common == --* ]] || return 1
  common=${common#--}
  takes_common_flag "$common" || return 1
  take_value "$common" "$@"
}

# The checks of the common flags this script takes, in this order: project, zone, name,
# accelerator type (known, and offered in the zone), node count.
require_common_flags() {
  local gen
  if takes_common_flag project; then require_project "$project"; fi
  if takes_common_flag zone; then require_zone "$zone"; fi
  if takes_common_flag name; then require_name "$name"; fi
  if takes_common_flag accelerator_type; then
    gen=$(generation_of "$accelerator_type")
    validate_zone "$gen" "$zone"
  fi
  if takes_common_flag node_count; then require_int --node_count "$node_count" 1; fi
}

# ------------------------------------------------------------------ run or print

dry_run() { [[ ${DRY_RUN:-0} == 1 || ${DRY_RUN:-} == true ]]; }

# Quotes each argument for a POSIX shell: bare when made of safe characters, in single
# quotes when it has none, in double quotes when nothing in it expands there, otherwise
# in single quotes with '\'' for each quote inside. The result reads back to the same
# words with `eval` or Python's shlex.split.
shell_quote() {
  local out=() arg q="'" escaped="'\\''" special='[$`"\\!]'
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$arg")
    elif [[ $arg != *"$q"* ]]; then
      out+=("'$arg'")
    elif [[ ! $arg =~ $special ]]; then
      out+=("\"$arg\"")
    else
      out+=("'${arg//$q/$escaped}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

# Runs a command, or under DRY_RUN=1 prints it (one line, quoted) on the caller's stdout.
run() {
  if dry_run; then
    shell_quote "$@" >&3
  else
    "$@" 3>&-
  fi
}

# A command whose output the script reads (a state, an address). Under DRY_RUN=1 it is
# printed and PLACEHOLDER stands for its output.
query() {
  local placeholder=$1
  shift
  if dry_run; then
    shell_quote "$@" >&3
    printf '%s\n' "$placeholder"
  else
    "$@" 3>&-
  fi
}

# ------------------------------------------------------------------ TPU generations

TPU_GENERATIONS=(v4 v5p v5e v6e)

# Slice sizes per generation: TensorCores for v4 and v5p, chips for v5e and v6e (the
# number in the accelerator type).
generation_sizes() {
  case $1 in
    v4) echo "8 16 32 64 128 256 512 1024 2048 4096" ;;
    v5p) echo "8 16 32 64 128 256 512 1024 2048 4096 6144 8192 12288" ;;
    v5e | v6e) echo "1 4 8 16 32 64 128 256" ;;
  esac
}

generation_type_prefix() {
  case $1 in
    v5e) echo v5litepod ;;
    *) echo "$1" ;;
  esac
}

# The TPU software (runtime) version for JAX on each generation.
runtime_version_for() {
  case $1 in
    v4) echo tpu-ubuntu2204-base ;;
    v5p) echo v2-alpha-tpuv5 ;;
    v5e) echo v2-alpha-tpuv5-lite ;;
    v6e) echo v2-alpha-tpuv6e ;;
  esac
}

# Zones that offer each generation; $TPU_EXTRA_ZONES (space-separated) adds more, for
# zones opened after this list was written.
generation_zones() {
  case $1 in
    v4) echo "us-central2-b" ;;
    v5p) echo "us-central1-a us-east5-a europe-west4-b" ;;
    v5e) echo "us-central1-a us-south1-a us-west1-c us-west4-a europe-west4-b asia-southeast1-b" ;;
    v6e) echo "us-central1-b us-east1-d us-east5-a us-east5-b europe-west4-a asia-northeast1-b southamerica-west1-a" ;;
  esac
}

known_accelerator_types() {
  local gen prefix size line
  for gen in "${TPU_GENERATIONS[@]}"; do
    prefix=$(generation_type_prefix "$gen")
    line="  $gen:"
    for size in $(generation_sizes "$gen"); do
      line+=" $prefix-$size"
    done
    printf '%s\n' "$line"
  done
}

# Prints the generation of an accelerator type; dies listing the known types otherwise.
generation_of() {
  local type=$1 gen size
  [[ -n $type ]] || die "missing accelerator type: pass --accelerator_type (e.g. v4-64, v5litepod-64)"
  for gen in "${TPU_GENERATIONS[@]}"; do
    for size in $(generation_sizes "$gen"); do
      if [[ $type == "$(generation_type_prefix "$gen")-$size" ]]; then
        printf '%s\n' "$gen"
        return 0
      fi
    done
  done
  die "unknown accelerator type '$type'; known types:
$(known_accelerator_types)"
}

validate_zone() {
  local gen=$1 zone=$2 known=()
  read -ra known <<<"$(generation_zones "$gen") ${TPU_EXTRA_ZONES:-}"
  [[ " ${known[*]} " == *" $zone "* ]] && return 0
  die "zone '$zone' does not offer $gen TPUs; known $gen zones: ${known[*]}
(set TPU_EXTRA_ZONES='$zone' if this zone has opened since)"
}

# Hosts (TPU VM workers) in one slice of an accelerator type.
hosts_per_slice() {
  local type=$1 gen size chips
  gen=$(generation_of "$type")
  size=${type##*-}
  case $gen in
    v4 | v5p) chips=$((size / 2)) ;; # two TensorCores a chip
    *) chips=$size ;;
  esac
  # Four chips a host, except single-host v5e / v6e machines of up to eight chips.
  if ((chips <= 4)) || [[ ($gen == v5e || $gen == v6e) && $chips -le 8 ]]; then
    echo 1
  else
    echo $((chips / 4))
  fi
}

# Node (slice) names: NAME for one slice, NAME-0 .. NAME-(N-1) for a multislice
# queued resource created with --node-prefix=NAME.
node_names() {
  local name=$1 count=$2 i
  if ((count == 1)); then
    echo "$name"
  else
    for ((i = 0; i < count; i++)); do echo "$name-$i"; done
  fi
}

# ------------------------------------------------------------------ gin arguments

# Prints the gin files named in gecko-train arguments (--gin_file=F or --gin_file F).
gin_files_in() {
  while (($#)); do
    case $1 in
      --gin_file=*) printf '%s\n' "${1#--gin_file=}" ;;
      --gin_file)
        (($# >= 2)) && printf '%s\n' "$2"
        shift
        ;;
    esac
    shift
  done
}

# Where a gin file named on the command line is found: "local" (relative to the current
# directory: copied to the workers by setup.sh), "packaged" (ships with gecko_jax), "gcs"
# (read by gecko-train). Dies for anything else, before anything is created.
gin_file_kind() {
  local file=$1
  if [[ $file == gs://* ]]; then
    echo gcs
  elif [[ $file == /* ]]; then
    die "gin file '$file': give a path relative to the current directory (the workers find it under ~/$REMOTE_DIR)"
  elif [[ -f $file ]]; then
    echo local
  elif [[ -f $PACKAGED_GIN_DIR/$file ]]; then
    echo packaged
  else
    die "gin file '$file' does not exist (looked in $(pwd) and in the packaged gecko_jax/gin/)"
  fi
}

check_gin_files() {
  local file
  while IFS= read -r file; do
    gin_file_kind "$file" >/dev/null
  done < <(gin_files_in "$@")
}

# Prints MODEL_DIR as bound by --gin.MODEL_DIR=... or --gin_bindings='MODEL_DIR = ...'
# (the last one wins, as in gin), with the gin string quotes removed.
gin_model_dir() {
  local arg value="" binding
  while (($#)); do
    arg=$1
    binding=""
    case $arg in
      --gin.MODEL_DIR=*) binding=${arg#--gin.MODEL_DIR=} ;;
      --gin_bindings=*) binding=${arg#--gin_bindings=} ;;
      --gin_bindings)
        (($# >= 2)) && binding=$2
        shift
        ;;
    esac
    if [[ $arg == --gin_bindings* ]]; then
      if [[ $binding =~ ^[[:space:]]*MODEL_DIR[[:space:]]*=(.*)$ ]]; then
        binding=${BASH_REMATCH[1]}
      else
        binding=""
      fi
    fi
    if [[ -n $binding ]]; then
      binding=$(trim "$binding")
      if [[ $binding =~ ^\'(.*)\'$ || $binding =~ ^\"(.*)\"$ ]]; then
        value=${BASH_REMATCH[1]}
      else
        value=$binding
      fi
    fi
    shift
  done
  printf '%s' "$value"
}

trim() {
  local s=$1
  s=${s#"${s%%[![:space:]]*}"}
  s=${s%"${s##*[![:space:]]}"}
  printf '%s' "$s"
}

# A run over several hosts writes its checkpoints where every host can reach them.
check_model_dir_for_pod() {
  local model_dir=$1 what=$2
  [[ -n $model_dir ]] ||
    die "$what needs MODEL_DIR on the command line: add --gin.MODEL_DIR=\"'gs://BUCKET/DIR'\""
  [[ $model_dir == gs://* ]] ||
    die "MODEL_DIR '$model_dir' is not on gs://: $what has several hosts, which must all write one checkpoint directory"
}
