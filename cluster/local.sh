#!/usr/bin/env bash
# A local Ray cluster for meta-dist, bound to loopback only: a head with the Jobs API at
# http://127.0.0.1:8265, extra worker nodes on the same machine, and stop. Every node uses
# --node-ip-address=127.0.0.1 and the dashboard listens on 127.0.0.1, so nothing is reachable
# from other machines; usage-stats reporting is off, so nothing is sent anywhere either.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: cluster/local.sh start [--num-cpus N] [--port P] [--dashboard-port P] [--temp-dir DIR]
       cluster/local.sh join  [--num-cpus N] [--port P]
       cluster/local.sh stop

  start   start a Ray head on 127.0.0.1 (GCS port P, default 6379; Jobs API / dashboard on
          http://127.0.0.1:DASHBOARD_PORT, default 8265) and print how to submit and join.
  join    add a worker node on this machine to the head at 127.0.0.1:P (default 6379).
  stop    `ray stop`: stops EVERY Ray process of this user on this machine, not only this
          cluster's.

  --num-cpus N       CPUs this node offers to Ray (default: all detected)
  --port P           head GCS port (start: where to listen; join: where the head listens)
  --dashboard-port P Jobs API / dashboard port of the head (start only)
  --temp-dir DIR     Ray's session directory root (start only; default /tmp/ray; keep it short,
                     Ray puts Unix sockets under it)

Uses `ray` from PATH (activate the project's venv first). Submit a run with:
  meta-dist submit --address http://127.0.0.1:8265 --follow --config sinusoid_maml
EOF
}

die() { echo "error: $*" >&2; exit 2; }

free_port() {
  # A currently free TCP port on loopback (for per-node agents of extra nodes on one machine).
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

command=${1:-}
[[ -n "$command" ]] || { usage >&2; exit 2; }
shift
case "$command" in
  -h|--help|help) usage; exit 0 ;;
  start|join|stop) ;;
  *) usage >&2; die "unknown command '$command'" ;;
esac

num_cpus="" port=6379 dashboard_port=8265 temp_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --num-cpus) [[ $# -ge 2 ]] || die "--num-cpus needs a value"; num_cpus=$2; shift 2 ;;
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; port=$2; shift 2 ;;
    --dashboard-port) [[ $# -ge 2 ]] || die "--dashboard-port needs a value"; dashboard_port=$2; shift 2 ;;
    --temp-dir) [[ $# -ge 2 ]] || die "--temp-dir needs a value"; temp_dir=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see cluster/local.sh --help)" ;;
  esac
done
for value in "$port" "$dashboard_port" ${num_cpus:+"$num_cpus"}; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "expected a whole number, got '$value'"
done

command -v ray >/dev/null 2>&1 || die "ray is not on PATH; activate the venv (source .venv/bin/activate)"

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_USAGE_STATS_ENABLED=0

common=(--node-ip-address=127.0.0.1 --disable-usage-stats)
[[ -n "$num_cpus" ]] && common+=(--num-cpus="$num_cpus")

case "$command" in
  start)
    extra=()
    [[ -n "$temp_dir" ]] && extra+=(--temp-dir="$temp_dir")
    ray start --head "${common[@]}" "${extra[@]}" --port="$port" \
      --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port"
    cat <<EOF

meta-dist local cluster is up (loopback only).
  Jobs API / dashboard: http://127.0.0.1:$dashboard_port
  cluster address:      127.0.0.1:$port
  add a worker node:    cluster/local.sh join --port $port [--num-cpus N]
  submit a run:         meta-dist submit --address http://127.0.0.1:$dashboard_port --follow ...
  stop:                 cluster/local.sh stop
EOF
    ;;
  join)
    # Ray refuses to add a node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (that setting means
    # "single-node Ray", and it is what keeps Ray's IP auto-detection on loopback), so the joining
    # node alone runs with 1; --node-ip-address=127.0.0.1 still binds it to loopback. A second
    # node on one machine also needs its own dashboard-agent port (the head's agent holds 52365);
    # Ray picks the other per-node ports at random.
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 ray start --address="127.0.0.1:$port" "${common[@]}" \
      --dashboard-agent-listen-port="$(free_port)"
    echo "joined a worker node to 127.0.0.1:$port"
    ;;
  stop)
    ray stop
    ;;
esac
