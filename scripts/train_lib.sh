# Shared by scripts/train_*.sh: `run <method> <minutes> [extra train args]` trains checkpoints/<method>-kermany-128
# with the one training loop, then evaluates it on the Kermany test split. Every command runs under
# one lock so trainings on a machine never overlap (they would only slow each other down).
# Environment: PY (python), DATA (data set, default kermany), LOCK, LOGDIR, ONLY (subset of method
# ids), RESUME=1 (continue interrupted trainings), EVAL_ARGS (extra evaluate arguments).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
LOCK=${UPD_TRAIN_LOCK:-/tmp/upd_train.lock}
LOGDIR=${LOGDIR:-/tmp}
DATA=${DATA:-kermany}
MAX_MB=15

run() {
    local method=$1 minutes=$2
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $method "* ]]; then return 0; fi
    local id="$method-kermany-128" log="$LOGDIR/train_$method-kermany-128.log"
    echo "$(date '+%F %T') training $id ($minutes min) -> $log"
    if ! flock "$LOCK" "$PY" -m upd_core train --method "$method" --data "$DATA" --size 128 --id "$id" \
            --out "checkpoints/$id" --time-budget "$minutes" --quiet ${RESUME:+--resume} "$@" >"$log" 2>&1; then
        echo "$(date '+%F %T') FAILED training $id (see $log)"
        return 1
    fi
    if ! flock "$LOCK" "$PY" -m upd_core evaluate --checkpoint "$id" --data "$DATA" ${EVAL_ARGS:-} >>"$log" 2>&1; then
        echo "$(date '+%F %T') FAILED evaluating $id (see $log)"
    fi
    local bytes
    bytes=$(stat -c %s "checkpoints/$id/model.safetensors")
    if [ "$bytes" -gt $((MAX_MB * 1000000)) ]; then
        echo "$(date '+%F %T') WARNING $id weights are $bytes bytes (> $MAX_MB MB)"
    fi
    echo "$(date '+%F %T') done $id ($bytes bytes)"
}
