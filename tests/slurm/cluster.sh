#!/usr/bin/env bash
# A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd as
# root, everything (config, key, state, logs, pid files) under $SLURM_LAB.
#
#   SLURM_LAB=/tmp/x bash tests/slurm/cluster.sh start   # installs what is missing (apt)
#   SLURM_LAB=/tmp/x bash tests/slurm/cluster.sh stop    # stops exactly what start started
#
# Partitions `compute` (default) and `gpu`, as profiles/slurm names them, on the one
# node, which declares one generic GPU (File=/dev/null) so that GPU-tagged rules can be
# scheduled. No accounting (slurmdbd): the profile's status checks use squeue.
# Exit status 3: SLURM cannot be installed or run here (the tests skip, saying why).
# Ports: SLURM_CTLD_PORT and SLURM_SLURMD_PORT (default 6817, 6818).
set -euo pipefail

LAB=${SLURM_LAB:?set SLURM_LAB to a directory}
CTLD_PORT=${SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_SLURMD_PORT:-6818}
ETC=$LAB/etc RUN=$LAB/run LOG=$LAB/log MUNGE=$LAB/munge BIN=$LAB/bin
CONF=$ETC/slurm.conf
SOCK=$MUNGE/munge.socket.2
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin:/sbin  # the daemons live in sbin, off a user's PATH

log() { echo "[cluster] $*" >&2; }
cannot() { echo "[cluster] cannot run SLURM here: $*" >&2; exit 3; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

alive() { # alive PIDFILE NAME: a live process of that name (zombies count as gone)
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/$pid/comm) == "$2" ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z) != Z ]]
}

wait_for() { # wait_for SECONDS WHAT CMD...
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "timed out after ${seconds}s waiting for $what (logs in $LOG)"
}

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch srun squeue sinfo scontrol; do
        command -v "$cmd" >/dev/null || { missing=(slurm-wlm); break; }
    done
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || cannot "${missing[*]} missing, and installing needs root"
    command -v apt-get >/dev/null || cannot "${missing[*]} missing, and there is no apt-get"
    log "apt-get install ${missing[*]}"
    { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        timeout 600 apt-get install -y -qq "${missing[@]}"; } >"$LOG/apt.log" 2>&1 ||
        cannot "apt-get install ${missing[*]} failed: $(tail -1 "$LOG/apt.log")"
    for cmd in slurmctld slurmd srun munged; do
        command -v "$cmd" >/dev/null || cannot "$cmd is still missing after apt-get install"
    done
}

write_config() {
    local node hw realmem topo=()
    node=$(hostname -s)
    read -r -a hw < <(slurmd -C | head -1)
    for kv in "${hw[@]}"; do
        case $kv in
            NodeName=*) ;;
            RealMemory=*) realmem=${kv#RealMemory=} ;;
            *=*) topo+=("$kv") ;;
        esac
    done
    [[ -n ${realmem:-} ]] || die "could not read the node's memory from 'slurmd -C'"
    # jobstep plugins drop SLURM_CONF before their inner srun: these put it back
    for cmd in srun sbatch squeue sinfo scontrol scancel sacct; do
        local real
        real=$(PATH=/usr/bin:/usr/sbin:/bin command -v "$cmd" || true)
        [[ -n $real ]] || continue
        printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$CONF" "$real" >"$BIN/$cmd"
        chmod 755 "$BIN/$cmd"
    done
    # a File is needed: with Count alone slurmd finds no GPU and drains the node
    printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\n' "$node" >"$ETC/gres.conf"
    cat >"$CONF" <<CONF
ClusterName=s2basemap-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$LAB/state
SlurmdSpoolDir=$LAB/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# finished jobs stay listed this long: squeue status checks and the test read them
MinJobAge=7200
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 ${topo[*]} RealMemory=$((realmem * 90 / 100)) Gres=gpu:1 State=UNKNOWN
PartitionName=compute Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
CONF
    cat >"$LAB/env.sh" <<ENV
export SLURM_CONF=$CONF
export PATH=$BIN:\$PATH
ENV
}

node_ready() {
    local state
    state=$(sinfo -h -o %t -p compute 2>/dev/null | head -1)
    case $state in
        idle | mix | alloc) return 0 ;;
        drain* | drng* | inval* | down*)
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
    esac
    return 1
}

start() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$BIN" "$LAB/state" "$LAB/spool" "$MUNGE"
    chmod 755 "$MUNGE"
    install
    [[ $(id -u) == 0 ]] || cannot "the daemons run as root here, and this is uid $(id -u)"
    write_config
    if [[ ! -s $MUNGE/munge.key ]]; then
        dd if=/dev/urandom of="$MUNGE/munge.key" bs=128 count=1 status=none
    fi
    chmod 600 "$MUNGE/munge.key"
    alive "$RUN/munged.pid" munged || munged --force --socket="$SOCK" \
        --key-file="$MUNGE/munge.key" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$MUNGE/munged.seed"
    wait_for 30 munged sh -c "munge -S '$SOCK' -n | unmunge -S '$SOCK'"
    alive "$RUN/slurmctld.pid" slurmctld || slurmctld -f "$CONF"
    wait_for 60 slurmctld sh -c 'scontrol ping | grep -q UP'
    alive "$RUN/slurmd.pid" slurmd || slurmd -f "$CONF" -N "$(hostname -s)"
    wait_for 120 "the node to be idle" node_ready
    timeout 120 srun -p compute -n1 --mem=100 true || die "a first srun failed (logs in $LOG)"
    log "ready: $(sinfo -h -o '%P %t cpus=%c mem=%m gres=%G' | tr '\n' ' ')"
}

stop_one() { # stop_one PIDFILE NAME
    local pid
    [[ -s $1 ]] || return 0
    pid=$(<"$1")
    if alive "$1" "$2"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            alive "$1" "$2" || break
            sleep 0.5
        done
        alive "$1" "$2" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

stop() {
    if alive "$RUN/slurmctld.pid" slurmctld; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ' || true)
        [[ -z ${jobs// /} ]] || timeout 10 scancel $jobs 2>/dev/null || true
    fi
    stop_one "$RUN/slurmd.pid" slurmd
    stop_one "$RUN/slurmctld.pid" slurmctld
    stop_one "$RUN/munged.pid" munged
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) die "usage: SLURM_LAB=DIR $0 start|stop" ;;
esac
