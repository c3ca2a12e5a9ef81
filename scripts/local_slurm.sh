#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, with accounting, for the `slurm` tests and benches.
#
#   scripts/local_slurm.sh start    install (Debian: slurm-wlm, munge, slurmdbd, mariadb-server) if
#                                   missing, write a one-node config for this host, start munged,
#                                   MariaDB, slurmdbd, slurmctld and slurmd, and wait until `sinfo`
#                                   shows the node idle and `sacct` answers
#   scripts/local_slurm.sh stop     end only the daemons this script started (its PID files)
#   scripts/local_slurm.sh status   what runs, `sinfo`; exit 0 when the cluster answers, else 3
#
# Needs root (it installs packages, writes /etc/slurm and runs the daemons as root/munge/mysql).
# Idempotent: `start` starts only what is not already running, `stop` on a stopped cluster does
# nothing. The cluster: ClusterName xbarchar, partition xbarchar (default), account xbarchar with
# root as a user, AccountingStorageEnforce=associations (an unknown account is refused, as on real
# clusters). Daemon state, logs and PID files live in $XBARCHAR_SLURM_STATE (/var/lib/xbarchar-slurm).
set -euo pipefail

STATE=${XBARCHAR_SLURM_STATE:-/var/lib/xbarchar-slurm}
CLUSTER=xbarchar
PARTITION=xbarchar
ACCOUNT=xbarchar
NODE=$(hostname -s)
SLURM_CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARKER="# written by xbarchar scripts/local_slurm.sh"
DB_SOCKET=/run/mysqld/mysqld.sock
WAIT_S=${XBARCHAR_SLURM_WAIT_S:-90}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
BINARIES=(munged mariadbd slurmdbd slurmctld slurmd sbatch sacct sacctmgr sinfo)

log() { echo "[local_slurm] $*" >&2; }
die() { echo "[local_slurm] error: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (installs Debian packages and runs the SLURM daemons)"
}

missing_binaries() {
    local b out=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b")
    done
    echo "${out[*]:-}"
}

install_packages() {
    local missing
    missing=$(missing_binaries)
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null || die "missing $missing and no apt-get: install ${PACKAGES[*]} yourself"
    log "installing ${PACKAGES[*]} (missing: $missing)"
    # Package scripts must not start the daemons: this script starts (and stops) them itself.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$guard"
        chmod +x "$guard"
    fi
    local rc=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"; } >&2 || rc=$?
    [ -n "$guard" ] && rm -f "$guard"
    [ "$rc" -eq 0 ] || die "apt-get install ${PACKAGES[*]} failed (exit $rc)"
    missing=$(missing_binaries)
    [ -z "$missing" ] || die "still missing after install: $missing"
}

# ---------------------------------------------------------------------------------- processes
pidfile() {  # mariadbd writes its PID file as user mysql, into a folder it owns
    if [ "$1" = mariadb ]; then echo "$STATE/mariadb/mariadb.pid"; else echo "$STATE/run/$1.pid"; fi
}

alive() {  # alive NAME: the PID in our PID file is a running process
    local f pid
    f=$(pidfile "$1")
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds
    local limit=$1 what=$2 t=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1))
        [ "$t" -le "$((limit * 2))" ] || return 1
        sleep 0.5
    done
    log "$what"
}

# ---------------------------------------------------------------------------------- configs
real_memory_mb() {
    # What slurmd sees, less 15% for the system and the other users of this machine.
    local mb
    mb=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    [ -n "$mb" ] || mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    echo $((mb * 85 / 100))
}

write_config() {
    local file=$1 mode=$2 body=$3
    if [ -e "$file" ] && ! grep -qF "$MARKER" "$file"; then
        die "$file exists and was not written by this script; move it away to use the local test cluster"
    fi
    local tmp="$file.tmp.$$"
    printf '%s\n%s\n' "$MARKER" "$body" > "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$file"
}

write_configs() {
    mkdir -p /etc/slurm "$STATE"/{run,log,slurmctld,slurmd}
    local cpus mem
    cpus=$(nproc)
    mem=$(real_memory_mb)
    write_config "$SLURM_CONF" 644 "ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
# Finished jobs stay visible to squeue for 5 min (the SLURM executor's squeue status mode needs it).
MinJobAge=300
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"
    write_config "$DBD_CONF" 600 "AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=root
StoragePort=3306"
}

# ---------------------------------------------------------------------------------- daemons
munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
db_answers() { mariadb --protocol=socket -S "$DB_SOCKET" -u root -e 'SELECT 1' >/dev/null 2>&1; }
ctld_answers() { scontrol ping 2>/dev/null | grep -q "UP"; }
node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)" = "idle" ]; }
sacct_answers() { sacct -n -X -S now >/dev/null 2>&1; }
dbd_answers() { sacctmgr -n list cluster >/dev/null 2>&1; }

start_munged() {
    if munge_answers; then return 0; fi
    [ -s /etc/munge/munge.key ] || { mungekey --create --force >&2; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f "$(pidfile munged)"
    touch "$(pidfile munged)" && chown munge:munge "$(pidfile munged)"
    runuser -u munge -- munged --pid-file="$(pidfile munged)"
    wait_for 20 "munged up" munge_answers || die "munged did not answer (see /var/log/munge/munged.log)"
}

start_mariadb() {
    if db_answers; then return 0; fi
    # mariadbd drops to user mysql before it writes its PID file and log: both in a folder it owns.
    mkdir -p /run/mysqld "$STATE/mariadb" && chown mysql:mysql /run/mysqld "$STATE/mariadb"
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >&2
    setsid mariadbd --user=mysql --datadir=/var/lib/mysql --socket="$DB_SOCKET" --bind-address=127.0.0.1 \
        --pid-file="$(pidfile mariadb)" --log-error="$STATE/mariadb/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for 60 "MariaDB up" db_answers || die "MariaDB did not answer (see $STATE/mariadb/mariadb.log)"
}

start_slurmdbd() {
    if alive slurmdbd && dbd_answers; then return 0; fi
    slurmdbd
    wait_for 60 "slurmdbd up" dbd_answers || die "slurmdbd did not answer (see $STATE/log/slurmdbd.log)"
    # Register the cluster, its account and root's association (idempotent).
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >&2
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
        || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="xbarchar tests" Organization=xbarchar >&2
    sacctmgr -n -P list user format=user | grep -qx root \
        || sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >&2
    sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=account | grep -qx "$ACCOUNT" \
        || sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >&2
}

start_slurmctld() {
    if alive slurmctld && ctld_answers; then return 0; fi
    slurmctld -i
    wait_for 60 "slurmctld up" ctld_answers || die "slurmctld did not answer (see $STATE/log/slurmctld.log)"
}

start_slurmd() {
    if ! alive slurmd; then slurmd; fi
    wait_for "$WAIT_S" "node $NODE idle" node_idle \
        || die "node $NODE is not idle: $(sinfo -h -N -o '%N %T %E' 2>&1) (see $STATE/log/slurmd.log)"
}

cmd_start() {
    need_root
    install_packages
    write_configs
    start_munged
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_for 30 "sacct answers" sacct_answers || die "sacct does not answer: $(sacct -n -X 2>&1 | head -1)"
    log "cluster $CLUSTER up: partition $PARTITION, account $ACCOUNT, node $NODE ($(nproc) CPUs)"
}

stop_one() {  # stop_one NAME: SIGTERM the PID in our PID file, wait until it is gone
    local f pid t=0
    f=$(pidfile "$1")
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        while kill -0 "$pid" 2>/dev/null && [ "$t" -lt 60 ]; do sleep 0.5; t=$((t + 1)); done
        kill -0 "$pid" 2>/dev/null && { log "$1 ($pid) ignored SIGTERM for 30 s; SIGKILL"; kill -KILL "$pid"; }
        log "stopped $1 ($pid)"
    fi
    rm -f "$f"
}

cmd_stop() {
    need_root
    local name
    for name in slurmd slurmctld slurmdbd mariadb munged; do stop_one "$name"; done
}

cmd_status() {
    local name rc=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"
        else echo "$name: not started by this script"; fi
    done
    if ctld_answers && node_idle_or_busy && sacct_answers; then
        sinfo
    else
        echo "cluster: not answering (scripts/local_slurm.sh start)"
        rc=3
    fi
    return "$rc"
}

node_idle_or_busy() { sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -Eq "^(idle|mixed|allocated)"; }

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
