"""A real single-node SLURM (Debian's slurm-wlm and munge) on this machine, for the profile test.

``start()`` installs the packages when they are missing (root and apt-get
needed), writes ``/etc/slurm/slurm.conf`` and ``gres.conf`` (the default
location: the executor plugin removes every ``SLURM_*`` variable, SLURM_CONF
included, from the environment of the jobs it submits), starts munged,
slurmctld and slurmd, and waits for the node to be idle. ``stop()`` shuts the
daemons down and removes the files it wrote.

The node has 8 CPUs and 64 GB whatever the machine has, and one fake GPU (``gres/gpu`` on /dev/null),
so that jobs asking for ``--gpus=1`` are scheduled (they find no CUDA device and
train on the CPU). Without slurmdbd there is no ``sacct``: finished jobs stay
visible to ``squeue`` for a day (``MinJobAge``), which the plugin's ``squeue``
status command needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MARK = "# written by braindl's tests/slurm_cluster.py"
ETC = Path("/etc/slurm")


class Unavailable(RuntimeError):
    """SLURM cannot be installed or started here (not root, no apt-get)."""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def install() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("slurm-wlm is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = _run(["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"], env=env)
    if out.returncode:
        out = _run(["sh", "-c", "apt-get update -q && apt-get install -y -q slurm-wlm munge"], env=env)
    if out.returncode:
        raise RuntimeError(f"apt-get install slurm-wlm munge failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def _config(work: Path, host: str) -> str:
    # the node claims 8 CPUs and 64 GB (config_overrides: slurmd does not check them against the
    # machine), so that jobs sized by profiles/slurm for a real cluster node are scheduled here too
    return f"""{MARK}
ClusterName=braindl
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
MpiDefault=none
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=86400
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName={host} CPUs=8 RealMemory=64000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def start(work: Path) -> dict:
    """Install (if needed) and start a one-node cluster; returns what ``stop`` needs."""
    install()
    for f in ("slurm.conf", "gres.conf"):
        p = ETC / f
        if p.exists() and MARK not in p.read_text():
            raise Unavailable(f"{p} exists and is not ours: not touching a configured SLURM")
    work = Path(work)
    for d in ("state", "spool"):
        (work / d).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    ETC.mkdir(parents=True, exist_ok=True)
    (ETC / "slurm.conf").write_text(_config(work, host))
    (ETC / "gres.conf").write_text(f"{MARK}\nNodeName={host} Name=gpu File=/dev/null\n")
    state = {"work": work, "munged": False}
    if _run(["pgrep", "-x", "munged"]).returncode:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            _run(["mungekey", "--create"])
        out = _run(["munged", "--force"])
        if out.returncode:
            stop(state)
            raise RuntimeError(f"munged failed to start: {out.stderr}")
        state["munged"] = True
    for daemon in ("slurmctld", "slurmd"):
        out = _run([daemon])
        if out.returncode:
            stop(state)
            raise RuntimeError(f"{daemon} failed to start: {out.stderr}\n{_logs(work)}")
    for _ in range(60):
        out = _run(["sinfo", "-h", "-o", "%T"])
        if out.stdout.strip() == "idle":
            return state
        time.sleep(1)
    stop(state)
    raise RuntimeError(f"the SLURM node did not become idle (sinfo: {out.stdout} {out.stderr})\n{_logs(work)}")


def _logs(work: Path) -> str:
    return "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in sorted(Path(work).glob("*.log")))


def job_states(ids) -> dict[str, str]:
    """State of each job id as squeue reports it (finished jobs stay listed for MinJobAge)."""
    out = _run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(ids)])
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def stop(state: dict) -> None:
    work = Path(state["work"])
    _run(["scontrol", "shutdown"])
    for pid_file in ("slurmd.pid", "slurmctld.pid"):
        p = work / pid_file
        if p.exists():
            _run(["kill", p.read_text().strip()])
    if state.get("munged"):
        _run(["pkill", "-x", "munged"])
    for f in ("slurm.conf", "gres.conf"):
        p = ETC / f
        if p.exists() and MARK in p.read_text():
            p.unlink()
