#!/usr/bin/env bash
# A throw-away single-node SLURM cluster (with accounting and one fake GPU) on this machine,
# for testing the Snakemake SLURM profile. Needs root and Debian 12 (slurm-wlm 22.05).
#
#   bash tests/slurm/cluster.sh up       # install + configure + start everything (idempotent)
#   bash tests/slurm/cluster.sh status   # sinfo / squeue / sacct
#   bash tests/slurm/cluster.sh down     # cancel jobs, stop what `up` started (safe twice)
#   bash tests/slurm/cluster.sh reset    # down, then delete the state dir (next `up` is fresh)
#
# Environment: VICUNA_SLURM_STATE (default /tmp/vicuna-slurm), VICUNA_SLURM_SKIP_APT=1 (do not
# call apt-get), VICUNA_SLURM_DB_PORT (default 3306).
# Daemons run in the foreground of their own session (setsid ... -D/-F &), so their PIDs are ours
# to record in $STATE/pid and to stop; nothing is started or stopped by name.
set -euo pipefail

STATE=${VICUNA_SLURM_STATE:-/tmp/vicuna-slurm}
DB_PORT=${VICUNA_SLURM_DB_PORT:-3306}
CLUSTER=vicuna
ACCOUNT=vicuna
NODE=localhost          # the hostname is not "localhost": slurmd is started with -N localhost
PARTITION=main
ETC=/etc/slurm          # slurm-jobstep drops SLURM_CONF before srun: configs must be at the default
PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

LOG=$STATE/log
PIDS=$STATE/pid
RUN=$STATE/run
DBDIR=$STATE/mysql
SOCK=$RUN/mysqld.sock

say() { printf '[cluster.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.5 s until it succeeds; fail after SECONDS.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    say "$what: ok"
}

pid_of() { if [[ -s $PIDS/$1.pid ]]; then cat "$PIDS/$1.pid"; fi; }

# is_running NAME: the recorded PID runs NAME (guards against PID reuse) and is not a zombie
# (exited but not yet reaped: by this script while it runs, later by PID 1, which can be slow).
is_running() {
    local pid stat; pid=$(pid_of "$1")
    [[ -n $pid ]] && read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
    [[ $stat == "$pid ($1) "* && $stat != "$pid ($1) Z"* ]]
}

# munged -F logs to stderr (captured in munged.stdout); the others write their LogFile.
log_of() { if [[ $1 == munged ]]; then echo "$LOG/munged.stdout"; else echo "$LOG/$1.log"; fi; }

fail_daemon() {  # fail_daemon NAME WHY
    local log; log=$(log_of "$1")
    say "last lines of $log:"
    tail -n 20 "$log" >&2 2>/dev/null || true
    if [[ $log != "$LOG/$1.stdout" && -s $LOG/$1.stdout ]]; then
        say "stdout/stderr of $1 ($LOG/$1.stdout):"; tail -n 10 "$LOG/$1.stdout" >&2
    fi
    [[ $1 != slurmd ]] || timeout 10 sinfo -R >&2 || true
    die "$1 failed to start ($2); see its log: $log"
}

# await NAME SECONDS CHECK...: wait until CHECK succeeds; fail at once if daemon NAME exits.
await() {
    local name=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        is_running "$name" || fail_daemon "$name" "it exited"
        ((SECONDS < deadline)) || fail_daemon "$name" "'$*' did not succeed within $secs s"
        sleep 0.5
    done
    say "$name: ok ($*)"
}

# start_daemon NAME CMD...: run CMD in the background in a new session; record its PID.
start_daemon() {
    local name=$1; shift
    if is_running "$name"; then say "$name already running (pid $(pid_of "$name"))"; return 0; fi
    # setsid: the daemon survives the shell (and the job control group) that started it.
    setsid "$@" </dev/null >"$LOG/$name.stdout" 2>&1 &
    local pid=$!
    echo "$pid" >"$PIDS/$name.pid"
    # Until setsid/setpriv have exec'ed the daemon, the PID runs under their name: wait for it
    # (or for an early exit, which `await` then reports).
    for _ in {1..40}; do
        is_running "$name" && break
        [[ $(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) =~ ^[^Z]$ ]] || break
        sleep 0.25
    done
    say "started $name (pid $pid)"
}

# write_file PATH MODE: write stdin to PATH only if the content changed (keeps `up` idempotent).
write_file() {
    local path=$1 mode=$2 tmp; tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; return 0; fi
    install -m "$mode" "$tmp" "$path"; rm -f "$tmp"
    say "wrote $path"
    CONFIG_CHANGED=1
}

install_packages() {
    if [[ ${VICUNA_SLURM_SKIP_APT:-0} == 1 ]]; then say "apt: skipped"; return 0; fi
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >"$LOG/apt.log" 2>&1 || die "apt-get update failed, see $LOG/apt.log"
    timeout 600 apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >>"$LOG/apt.log" 2>&1 \
        || die "apt-get install failed, see $LOG/apt.log"
    say "apt: ${PKGS[*]} present ($((SECONDS - t0)) s)"
}

write_configs() {
    local cpus mem defmem
    # slurmd -C measures the node; RealMemory above the real value would drain it.
    read -r cpus mem < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
    [[ -n ${cpus:-} && -n ${mem:-} ]] || die "could not parse 'slurmd -C'"
    # A job without --mem gets one CPU's share of memory; without DefMemPerCPU it takes the node.
    defmem=$((mem / cpus))
    mkdir -p "$ETC"
    write_file "$ETC/slurm.conf" 644 <<EOF
# Written by tests/slurm/cluster.sh: single-node test cluster. Do not edit by hand.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
AuthType=auth/munge
# Root runs the daemons: a test cluster, no state to share with a slurm user.
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No systemd / cgroup delegation here: track processes via /proc, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
DefMemPerCPU=$defmem
# Finished jobs stay visible to squeue/scontrol for 5 min (the squeue status fallback needs >=120 s).
MinJobAge=300
ReturnToService=2
# No mail on this machine (silences "Configured MailProg is invalid").
MailProg=/bin/true
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
# Record GPUs in AllocTRES so sacct shows gres/gpu (not recorded by default).
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmd 22.05 drops a GPU without File= and drains the node; a mknod'ed char device works.
    write_file "$ETC/gres.conf" 644 <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$STATE/dev/nvidia0
EOF
    local pass; pass=$(cat "$STATE/db.pass")
    # slurmdbd refuses a slurmdbd.conf readable by others (it holds the DB password).
    write_file "$ETC/slurmdbd.conf" 600 <<EOF
AuthType=auth/munge
DbdHost=$NODE
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
}

make_dirs() {
    mkdir -p "$LOG" "$PIDS" "$RUN" "$STATE/slurmctld" "$STATE/spool/slurmd-$NODE" "$STATE/dev"
    # mariadbd runs as mysql: it must write its run dir; the socket/pid live there.
    chown mysql:mysql "$RUN"
    [[ -s $STATE/db.pass ]] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass")
    # The fake GPU: major 195 is NVIDIA's; slurmd only needs the file to exist as a device.
    [[ -c $STATE/dev/nvidia0 ]] || mknod "$STATE/dev/nvidia0" c 195 0
}

start_munge() {
    if timeout 5 bash -c 'munge -n | unmunge' >/dev/null 2>&1; then say "munge: already answering"; return 0; fi
    # munged checks that its socket dir belongs to munge and must not run as root.
    install -d -o munge -g munge -m 755 /run/munge
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups munged -F
    await munged 20 bash -c 'munge -n | unmunge'
}

start_mariadb() {
    local mdb=(mariadb --no-defaults --protocol=socket -S "$SOCK" -u root)
    if [[ ! -d $DBDIR/mysql ]]; then
        mkdir -p "$DBDIR"; chown mysql:mysql "$DBDIR"
        # --no-defaults: ignore /etc/mysql (socket/datadir of the packaged, not-running server).
        timeout 120 mariadb-install-db --no-defaults --user=mysql --datadir="$DBDIR" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install-db.log" 2>&1 \
            || die "mariadb-install-db failed, see $LOG/mariadb-install-db.log"
        say "mariadb: data dir initialised in $DBDIR"
    fi
    start_daemon mariadbd mariadbd --no-defaults --user=mysql --datadir="$DBDIR" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$SOCK" --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOG/mariadbd.log" --skip-name-resolve --innodb-buffer-pool-size=64M
    await mariadbd 60 "${mdb[@]}" -e 'SELECT 1'
    local pass; pass=$(cat "$STATE/db.pass")
    # slurmdbd connects over TCP to 127.0.0.1 (skip-name-resolve: grant to the IP, not 'localhost').
    timeout 30 "${mdb[@]}" -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
        ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || die "mariadb: could not create the slurm database user (log: $LOG/mariadbd.log)"
}

register_accounts() {
    local sam=(timeout 20 sacctmgr -i)
    # slurmctld must find its cluster in the database, or jobs are not accounted.
    if [[ -z $(timeout 20 sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
        "${sam[@]}" add cluster "$CLUSTER" >/dev/null
    fi
    if [[ -z $(timeout 20 sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
        "${sam[@]}" add account "$ACCOUNT" cluster="$CLUSTER" description="vicuna tests" organization=vicuna >/dev/null
    fi
    local users u; users=$(printf '%s\n' root "${SUDO_USER:-root}" | sort -u)
    for u in $users; do
        if ! timeout 20 sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" format=account | grep -qx "$ACCOUNT"; then
            "${sam[@]}" add user "$u" account="$ACCOUNT" defaultaccount="$ACCOUNT" >/dev/null
        fi
    done
    say "accounting: cluster=$CLUSTER account=$ACCOUNT users=${users//$'\n'/,}"
}

# The node answers and takes jobs (busy is fine: `up` may be re-run while jobs run).
node_ready() { [[ $(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null) =~ ^(idle|mixed|allocated)$ ]]; }

cmd_up() {
    local t0=$SECONDS
    [[ $(id -u) == 0 ]] || die "must run as root"
    mkdir -p "$LOG"
    install_packages
    CONFIG_CHANGED=0
    make_dirs
    write_configs
    if ((CONFIG_CHANGED)) && is_running slurmctld; then
        say "config changed while slurmctld runs: 'scontrol reconfigure' (or down/up for node changes)"
        timeout 20 scontrol reconfigure || true
    fi
    start_munge
    start_mariadb
    start_daemon slurmdbd slurmdbd -D
    await slurmdbd 60 timeout 10 sacctmgr -n list cluster
    register_accounts
    start_daemon slurmctld slurmctld -D
    await slurmctld 60 bash -c 'timeout 10 scontrol ping | grep -q UP'
    start_daemon slurmd slurmd -D -N "$NODE"
    await slurmd 60 node_ready
    # The plugin's status checks need sacct; make sure it answers before anyone submits.
    await slurmdbd 30 timeout 10 sacct -n -X -S now-1hour
    say "cluster up in $((SECONDS - t0)) s (state: $STATE)"
}

# stop_daemon NAME: TERM by recorded PID, KILL after 20 s.
stop_daemon() {
    local name=$1 pid
    if ! is_running "$name"; then rm -f "$PIDS/$name.pid"; say "$name: not running"; return 0; fi
    pid=$(pid_of "$name")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while is_running "$name" && ((SECONDS < deadline)); do sleep 0.3; done
    if is_running "$name"; then say "$name (pid $pid) ignored TERM: KILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    rm -f "$PIDS/$name.pid"
    say "$name stopped (pid $pid)"
}

cmd_down() {
    local t0=$SECONDS
    [[ $(id -u) == 0 ]] || die "must run as root"
    # Cancel jobs first, while slurmd can still kill their processes.
    if is_running slurmctld && is_running slurmd; then
        local jobs; jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: ${jobs//$'\n'/ }"
            # shellcheck disable=SC2086  # one argument per job id
            timeout 20 scancel $jobs || true
            # shellcheck disable=SC2016  # expanded by the inner bash, on each poll
            wait_for 30 "jobs gone" bash -c '[[ -z $(timeout 10 squeue -h -o %i) ]]' \
                || say "some jobs still listed after 30 s; stopping anyway"
        fi
    fi
    local d
    for d in slurmd slurmctld slurmdbd mariadbd munged; do stop_daemon "$d"; done
    # With no controller, every SLURM client retries for MessageTimeout - 1 s (9 s by default)
    # before it fails, and the SLURM executor plugin runs `scontrol show config` at every
    # Snakemake start, even a local one: a stopped cluster's config makes them fail at once.
    # `up` writes the running config again.
    if [[ -f $ETC/slurm.conf ]] && ! grep -q '^MessageTimeout=' "$ETC/slurm.conf"; then
        printf '# Cluster down (tests/slurm/cluster.sh down): clients fail at once.\nMessageTimeout=1\n' \
            >>"$ETC/slurm.conf"
    fi
    say "cluster down in $((SECONDS - t0)) s"
}

cmd_status() {
    local d
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if is_running "$d"; then echo "$d: running (pid $(pid_of "$d"))"; else echo "$d: not running"; fi
    done
    command -v sinfo >/dev/null || { echo "SLURM is not installed"; return 1; }
    echo "--- sinfo"; timeout 15 sinfo -o '%P %a %D %T %c %m %G %N' || echo "(sinfo: no answer)"
    echo "--- sinfo -R"; timeout 15 sinfo -R || true
    echo "--- squeue"; timeout 15 squeue || echo "(squeue: no answer)"
    echo "--- sacct (last day)"
    timeout 15 sacct -X -S now-1day -o JobID,JobName%20,Partition,Account,State,ExitCode,AllocTRES%50 \
        || echo "(sacct: no answer)"
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    reset) cmd_down; rm -rf "$STATE"; say "removed $STATE" ;;
    *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
