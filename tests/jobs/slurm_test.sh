#!/bin/sh
# The Slurm jobs against a real one-node Slurm cluster on this machine: the test writes its own
# slurm.conf (localhost, no cgroups: proctrack/pgid, task/none, so that it runs in a container),
# starts munged, slurmctld and slurmd in a temporary directory, submits jobs/sweep.sbatch (2 ranks,
# srun --mpi=pmix) and jobs/array.sbatch (one archive per model, then eplb merge) on the bundled
# data, waits for them, checks their state and archives (eplb verify), and stops the daemons it
# started, by PID. Exit 77 (ctest: skipped) when Slurm cannot run here, saying why.
#
#   tests/jobs/slurm_test.sh EPLB_BINARY REPOSITORY_ROOT
set -eu
eplb=$(realpath "$1")
root=$(realpath "$2")

skip() {
  echo "SKIP: $*" >&2
  exit 77
}
for tool in munged munge slurmctld slurmd sbatch scontrol srun sinfo; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool is not installed (jobs/setup.sh --tests installs slurm-wlm and munge)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd must start as root to run jobs as their user (this runs as $(id -un))"
plugins=$(dirname "$(find /usr/lib -name mpi_pmix.so -path '*slurm*' 2>/dev/null | head -n 1)")
[ -n "$plugins" ] && [ "$plugins" != . ] || skip "Slurm's mpi_pmix plugin is missing (needed by srun --mpi=pmix)"

work=$(mktemp -d /tmp/eplb-slurm-XXXXXX)
chmod 755 "$work"
mkdir -p "$work/state" "$work/spool" "$work/out"
started=""  # pid files of the daemons this test started, in start order

stop_daemons() {
  status=$?
  # Jobs first (their steps must not outlive slurmd), then the daemons, newest first, by PID.
  if [ -f "$work/slurmctld.pid" ]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
  fi
  newest_first=""
  for pidfile in $started; do newest_first="$pidfile $newest_first"; done
  for pidfile in $newest_first; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then
    for log in "$work"/*.log "$work"/out/*.out; do
      [ -f "$log" ] && { echo "---- $log"; tail -n 30 "$log"; }
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap stop_daemons EXIT
trap 'exit 1' INT TERM

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# munge, with a key of its own.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$work/munge.key"
munged --force --socket="$work/munge.socket" --key-file="$work/munge.key" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munged.seed" ||
  skip "munged does not start: $(tail -n 1 "$work/munged.log" 2>/dev/null)"
started="$work/munged.pid"
for _ in $(seq 50); do [ -S "$work/munge.socket" ] && break; sleep 0.1; done

host=$(hostname -s)
cpus=$(nproc)
cat >"$work/slurm.conf" <<EOF
ClusterName=eplbtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
PluginDir=$plugins
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=eplb Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF="$work/slurm.conf"

slurmctld -f "$SLURM_CONF" || skip "slurmctld does not start: $(tail -n 1 "$work/slurmctld.log" 2>/dev/null)"
for _ in $(seq 50); do [ -s "$work/slurmctld.pid" ] && break; sleep 0.1; done
started="$started $work/slurmctld.pid"
slurmd -f "$SLURM_CONF" || skip "slurmd does not start: $(tail -n 1 "$work/slurmd.log" 2>/dev/null)"
for _ in $(seq 50); do [ -s "$work/slurmd.pid" ] && break; sleep 0.1; done
started="$started $work/slurmd.pid"
state=""
for _ in $(seq 150); do
  state=$(sinfo --noheader --format=%T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || skip "the local Slurm node did not come up (state '$state'): $(tail -n 2 "$work/slurmd.log")"
echo "slurm: one-node cluster on $host ($cpus CPUs) up"

# Waits for job $1 to end; prints its final state line ("JobState=... ExitCode=a:b").
wait_job() {
  for _ in $(seq 600); do
    line=$(scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | grep -E '^(JobState|ExitCode)=' | tr '\n' ' ')
    case "$line" in
      *JobState=PENDING* | *JobState=RUNNING* | *JobState=CONFIGURING* | *JobState=COMPLETING* | "") sleep 0.5 ;;
      *) echo "$line"; return 0 ;;
    esac
  done
  echo "job $1 did not end within 300 s" >&2
  return 1
}

expect_completed() {  # job id, what
  final=$(wait_job "$1")
  echo "slurm: $2 (job $1): $final"
  case "$final" in
    *JobState=COMPLETED*ExitCode=0:0*) ;;
    *) echo "FAIL: $2 did not complete with exit code 0" >&2; exit 1 ;;
  esac
}

export EPLB="$eplb"

# 1. jobs/sweep.sbatch: two ranks through srun --mpi=pmix into one archive.
job=$(sbatch --parsable --chdir="$work/out" --ntasks=2 --output="$work/out/sweep-%j.out" \
  "$root/jobs/sweep.sbatch" "$root/jobs/configs/demo-deepseek.ini" --output "$work/out/sweep.h5" --progress)
expect_completed "$job" "jobs/sweep.sbatch"
grep -q "ranks=2 " "$work/out/sweep-$job.out" || { echo "FAIL: the sweep did not run on 2 ranks" >&2; exit 1; }
grep -q "exit_code=0" "$work/out/sweep-$job.out"
"$eplb" verify "$work/out/sweep.h5"
plans=$("$eplb" inspect "$work/out/sweep.h5" --json | /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)["plans"]))')
# 2 inputs x 2 topologies x the three policies (policy = all).
[ "$plans" -eq 12 ] || { echo "FAIL: $plans plans in the sweep's archive, expected 12" >&2; exit 1; }

# 2. jobs/array.sbatch: one archive per model (deepseek-r1, olmoe), then eplb merge.
cat >"$work/out/two-models.ini" <<EOF
input = deepseek-r1/prefill=$root/jobs/data/sglang-ds-r1-h20/prefill_ep16_3500_1500.json
input = olmoe/domains=$root/jobs/data/olmoe-domains/olmoe_domains.h5
topology = 64/8/2/8
topology = 288/8/4/32
EOF
submitted=$(cd "$work/out" && "$root/jobs/array.sbatch" "$work/out/two-models.ini" "$work/out/array")
echo "slurm: $submitted"
merge=$(echo "$submitted" | sed -n 's/.*merge job \([0-9]*\).*/\1/p')
expect_completed "$merge" "jobs/array.sbatch merge"
for model in deepseek-r1 olmoe; do
  "$eplb" verify "$work/out/array/models/$model.h5" >/dev/null
done
"$eplb" verify "$work/out/array/all.h5"
merged=$("$eplb" inspect "$work/out/array/all.h5" --json | /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)["plans"]))')
# deepseek-r1 (256 experts) fits 288/8/4/32 only; olmoe (64 experts) fits both.
[ "$merged" -eq 3 ] || { echo "FAIL: $merged plans in the merged archive, expected 3" >&2; exit 1; }
echo "slurm: PASS"
