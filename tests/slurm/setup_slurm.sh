#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for the workflow's SLURM test.
#
#   setup_slurm.sh DIR CTLD_PORT SLURMD_PORT
#
# Installs slurm-wlm and munge with apt-get where they are missing (root only), writes
# DIR/slurm.conf and DIR/gres.conf (one node `localhost` with every CPU, a fake GPU whose
# device file is /dev/null, no accounting database), and starts munged, slurmctld and slurmd
# in the foreground of their own sessions, their output in DIR/*.log. Every daemon it starts
# is appended to DIR/pids ("name pid") at once, so the caller can stop exactly those by pid,
# also when this script fails half-way. DIR/env holds the SLURM_CONF export for clients.
# Outside DIR it writes only the apt-get installation, munge's socket in /run/munge and
# slurmd's configless cache in /run/slurm.
#
# Exit status: 0 ready; 77 cannot run here (not root, no apt-get, installation failed: the
# reason is printed); anything else: the cluster did not come up (see the logs in DIR).
set -euo pipefail

DIR=${1:?usage: setup_slurm.sh DIR CTLD_PORT SLURMD_PORT}
CTLD_PORT=${2:?controller port}
SLURMD_PORT=${3:?slurmd port}
SKIP=77

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: not root (SLURM daemons need root here)"; exit $SKIP
fi
if [ -e /etc/slurm/slurm.conf ]; then
  echo "SKIP: /etc/slurm/slurm.conf exists; this test only runs where it would not shadow the private cluster"
  exit $SKIP
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "SKIP: slurm-wlm/munge are not installed and apt-get is not available"; exit $SKIP
  fi
  echo "installing slurm-wlm and munge with apt-get"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } \
       >"$DIR/apt.log" 2>&1; then
    echo "SKIP: apt-get could not install slurm-wlm and munge (see $DIR/apt.log)"; exit $SKIP
  fi
fi

mkdir -p "$DIR"/{state,spool}
: >"$DIR/pids"

started=()
stop_started() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'status=$?; if [ $status -ne 0 ] && [ $status -ne $SKIP ]; then stop_started; fi' EXIT

# start NAME CMD...: run CMD in its own session, output to DIR/NAME.log, record its pid.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$DIR/$name.log" 2>&1 &
  local pid=$!
  started+=("$pid")
  echo "$name $pid" >>"$DIR/pids"
}

# munge on its default socket: slurmd in configless mode authenticates to slurmctld before it
# has any config, so it can only use the default. An already running munged is reused.
MUNGE_SOCKET=/run/munge/munge.socket.2
if ! { [ -S "$MUNGE_SOCKET" ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }; then
  mkdir -p /run/munge "$DIR/munge"
  chmod 755 /run/munge
  chmod 700 "$DIR/munge"
  head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  rm -f "$MUNGE_SOCKET"
  start munged munged --foreground --force --socket="$MUNGE_SOCKET" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/munge/munged.log"
  for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# The node line as slurmd detects the hardware (CPUs, sockets, cores, threads, memory).
hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
mem=$(echo "$hw" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
hw=$(echo "$hw" | sed "s/RealMemory=[0-9]*/RealMemory=$(( mem * 9 / 10 ))/")

cat >"$DIR/slurm.conf" <<EOF
ClusterName=nerfpipe
SlurmctldHost=localhost
# Configless: slurmd fetches this file from slurmctld and caches it under /run/slurm/conf,
# where clients inside jobs find it. They must: the jobstep executor removes SLURM_CONF
# from the environment of the `srun` it runs inside each job.
SlurmctldParameters=enable_configless
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting database: sacct cannot report jobs, so clients must use squeue, which lists a
# finished job for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
GresTypes=gpu
NodeName=localhost $hw Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
# A fake GPU: SLURM schedules it like a real one; the device file is /dev/null.
echo "NodeName=localhost Name=gpu File=/dev/null" >"$DIR/gres.conf"
echo "export SLURM_CONF=$DIR/slurm.conf" >"$DIR/env"
export SLURM_CONF="$DIR/slurm.conf"

start slurmctld slurmctld -D -i -f "$SLURM_CONF"
start slurmd slurmd -D -N localhost --conf-server "localhost:$CTLD_PORT"

for _ in $(seq 60); do
  state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 1
done
if [ "$state" != idle ]; then
  echo "node localhost is '${state:-unknown}', not idle; logs in $DIR"; exit 1
fi
sinfo
echo "SLURM ready: SLURM_CONF=$SLURM_CONF"
