#!/usr/bin/env bash
# A one-node Slurm cluster on this Debian machine, to try and test `--launcher slurm`.
#
#   sudo bash tools/slurm/local_cluster.sh start    # install (once), configure, start, wait
#   sudo bash tools/slurm/local_cluster.sh status   # daemons and sinfo
#   sudo bash tools/slurm/local_cluster.sh stop     # stop slurmd, slurmctld and munged
#
# start installs slurm-wlm and munge with apt-get when they are missing, writes
# /etc/slurm/slurm.conf for this node as `slurmd -C` describes it (no cgroups, no
# accounting database: jobs that ended stay visible to `scontrol show job` for
# MinJobAge seconds), starts munged (as the munge user), slurmctld and slurmd, and
# returns once `sinfo` shows the node idle. It never replaces a slurm.conf it did not
# write. Jobs take cores, not whole nodes (cons_tres, CR_Core), so two one-CPU jobs run
# side by side on a two-core machine. See docs/slurm.md.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK='# written by kt tools/slurm/local_cluster.sh'
# How long (s) Slurm keeps an ended job for scontrol; kt status reads ended jobs from it.
MIN_JOB_AGE=${KT_SLURM_MIN_JOB_AGE:-3600}
START_TIMEOUT=${KT_SLURM_START_TIMEOUT:-60}
LOG_DIR=/var/log/slurm

die() { echo "local_cluster.sh: $*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "run it as root (sudo bash $0 $1)"; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die 'slurm-wlm and munge are missing and there is no apt-get: install them with your package manager'
    echo 'installing slurm-wlm and munge (apt-get)'
    export DEBIAN_FRONTEND=noninteractive
    # The package lists of a fresh machine may be empty: update only when the install fails.
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
}

write_conf() {
    if [[ -f $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; leaving it (and this machine's Slurm) alone"
    fi
    local node host
    # e.g. NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
    host=${node%% *}
    host=${host#NodeName=}
    mkdir -p "$CONF_DIR" "$LOG_DIR" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
    chown slurm:slurm "$LOG_DIR" /var/lib/slurm/slurmctld
    cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=kt-local
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups: processes are tracked by parent id, tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No accounting database (slurmdbd): sacct has nothing to say, scontrol keeps ended jobs.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=$MIN_JOB_AGE
# Jobs get cores, not whole nodes.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
$node
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- munged
}

node_state() { sinfo --noheader --format=%T 2>/dev/null | head -n 1; }

start() {
    need_root start
    install_packages
    write_conf
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    local waited=0 state=''
    while (( waited < START_TIMEOUT * 2 )); do
        state=$(node_state)
        case $state in
            idle|mixed|allocated)
                echo "Slurm is up after ${SECONDS} s: $(sinfo --noheader --format='node %N, %c CPUs, %T')"
                return ;;
            down*|drain*) scontrol update nodename="$(sinfo --noheader --format=%N)" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
        waited=$(( waited + 1 ))
    done
    die "the node is not idle after ${START_TIMEOUT}s (sinfo: ${state:-no answer}); see $LOG_DIR/slurmctld.log and slurmd.log"
}

stop_pid() {  # name, pid file
    local pid
    pid=$(cat "$2" 2>/dev/null || pgrep -x "$1" || true)
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        # A stale pid file makes the packages' scripts think the daemon still runs.
        kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }
        sleep 0.1
    done
    die "$1 (pid $pid) did not stop"
}

stop() {
    need_root stop
    stop_pid slurmd /run/slurmd.pid
    stop_pid slurmctld /run/slurmctld.pid
    stop_pid munged /run/munge/munged.pid
    echo 'Slurm stopped'
}

status() {
    local name
    for name in munged slurmctld slurmd; do
        printf '%-10s %s\n' "$name" "$(pgrep -x "$name" >/dev/null && echo running || echo stopped)"
    done
    sinfo 2>&1 || true
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
