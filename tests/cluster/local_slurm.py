"""A real one-node Slurm cluster in a temporary folder, for the tests and for trying featviz by hand.

    sudo .venv/bin/python tests/cluster/local_slurm.py     # prints `export SLURM_CONF=...`; Ctrl-C stops it

Needs root and the Debian packages ``slurmctld slurmd slurm-client munge slurmdbd
mariadb-server`` (``.ci/run`` installs them). Nothing outside the folder is configured or
touched: every daemon reads its config from the folder, listens on a free port of 127.0.0.1
and is started here in the background, and :meth:`LocalSlurm.stop` stops each of them by
its pid (and cancels the jobs still queued). The client commands (``sbatch``, ``squeue``,
``sacct``, ``scontrol``) find the cluster through ``SLURM_CONF``: :attr:`LocalSlurm.env`.

Why each piece (found the hard way; docs/cluster.md):

* ``munged`` signs every message between the daemons and clients; it runs as the munge user
  with a key made here.
* ``slurmdbd`` with MariaDB: submitit learns a job's state only from ``sacct``, and without
  accounting storage ``sacct`` fails, so a job that dies leaves ``job.result()`` waiting for ever.
* ``proctrack/linuxproc`` and ``task/none``: no systemd and no cgroups here.
* ``KillWait=5``, ``cred_expire=10`` and a 5 s scheduler cycle: a requeued job restarts in
  seconds instead of minutes (by default Slurm waits 30 s for the job to die, then 120 s for
  the old credential to expire).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sacctmgr", "scontrol")
PACKAGES = "slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
CLUSTER = "featviz"
PARTITION = "debug"
T = TypeVar("T")


def unavailable() -> str | None:
    """Why a cluster cannot be started on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "a local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (its daemons run as root, munged as the munge user)"
    missing = [name for name in DAEMONS if _which(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install {PACKAGES})"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (apt-get install munge creates it)"
    return None


def _which(name: str) -> str | None:
    """Daemons live in sbin, which a non-login PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.2, failed: Callable[[], str | None] | None = None) -> T:
    """Poll ``check`` until it returns something other than None/False; TimeoutError naming ``what``.

    ``failed`` is polled too: a message from it ends the wait early (a daemon that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        reason = failed() if failed is not None else None
        if reason:
            raise RuntimeError(f"while waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


def _node_line() -> str:
    """This machine's ``NodeName=... CPUs=... RealMemory=...`` as slurmd itself sees it."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


class LocalSlurm:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd, configured and running under ``root``.

    Use as a context manager, or :meth:`start` then :meth:`stop`.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="featviz-slurm-"))
        self.etc, self.logs = self.root / "etc", self.root / "log"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.ports = {name: _free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        node = _node_line()
        self.node = node.split()[0].removeprefix("NodeName=")
        self.cpus = int(re.search(r"\bCPUs=(\d+)", node).group(1))  # type: ignore[union-attr]
        self._node_line = node
        self.env = {**os.environ, "SLURM_CONF": str(self.etc / "slurm.conf")}
        self.env["PATH"] = f"{self.env.get('PATH', '')}:/usr/sbin:/sbin"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- configuration ----------------------------------------------------------------
    def _write_configs(self) -> None:
        for folder in (self.etc, self.logs, self.root / "state", self.root / "spool", self.root / "mysql"):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (the munge user) must reach its folder
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket},cred_expire=10\n"
        (self.etc / "slurm.conf").write_text(
            f"ClusterName={CLUSTER}\n"
            f"SlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={self.ports['slurmctld']}\nSlurmdPort={self.ports['slurmd']}\n"
            f"{auth}CredType=cred/munge\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={self.root / 'state'}\nSlurmdSpoolDir={self.root / 'spool'}\n"
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}\nSlurmdPidFile={self.root / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={self.logs / 'slurmctld.log'}\nSlurmdLogFile={self.logs / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
            "JobRequeue=1\nKillWait=5\nReturnToService=2\nMpiDefault=none\n"
            "SchedulerParameters=sched_interval=5,bf_interval=5\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\nAccountingStoragePort={self.ports['slurmdbd']}\n"
            f"AccountingStoragePass={self.munge_socket}\n"  # the munge socket to reach slurmdbd with (AuthInfo's is not used for it)
            f"{self._node_line} NodeAddr=127.0.0.1 State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )
        dbd = self.etc / "slurmdbd.conf"  # slurmdbd finds it beside SLURM_CONF and insists on mode 600
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.ports['slurmdbd']}\nSlurmUser=root\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.ports['mariadb']}\n"
            f"StorageUser=root\nStorageLoc=slurm_acct_db\n"
            f"PidFile={self.root / 'slurmdbd.pid'}\nLogFile={self.logs / 'slurmdbd.log'}\n"
        )
        dbd.chmod(0o600)
        munge = pwd.getpwnam("munge")
        folder = self.munge_socket.parent
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)  # munged wants its socket folder searchable by all, writable by it alone
        key = folder / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        for path in (folder, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)

    # --- daemons ----------------------------------------------------------------------
    def _spawn(self, name: str, argv: Sequence[str], user: str | None = None) -> None:
        """Start one daemon in the foreground of its own session, its output in log/<name>.out."""
        with open(self.logs / f"{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [_which(argv[0]) or argv[0], *argv[1:]], stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True, user=user, group=user,
            )

    def _died(self, name: str) -> Callable[[], str | None]:
        def check() -> str | None:
            proc = self.procs[name]
            if proc.poll() is None:
                return None
            return f"{name} exited with code {proc.returncode}; its log: {self.tail(name)}"

        return check

    def tail(self, name: str, lines: int = 15) -> str:
        """The end of a daemon's log files (for error messages)."""
        text = []
        for path in sorted(self.logs.glob(f"{name}*")):
            text.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(text)

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm client command (``squeue``, ``scontrol``, ...) against this cluster."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def start(self, timeout: float = 120) -> LocalSlurm:
        """Write the configs and start every daemon; returns once the node takes jobs.

        A daemon that fails or a step that times out stops the others and raises with every log's tail.
        """
        atexit.register(self.stop)
        try:
            self._start(timeout)
        except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
            self.stop()
            raise RuntimeError(f"the local Slurm cluster in {self.root} did not start: {exc}\n{self.tail('')}") from exc
        return self

    def _start(self, timeout: float) -> None:
        self._write_configs()
        sock = self.munge_socket
        self._spawn("munged", ["munged", "-F", f"--socket={sock}", f"--key-file={sock.parent / 'munge.key'}",
                               f"--pid-file={sock.parent / 'munged.pid'}", f"--seed-file={sock.parent / 'munged.seed'}",
                               f"--log-file={sock.parent / 'munged.log'}"], user="munge")
        wait_for("munged's socket", sock.exists, timeout, failed=self._died("munged"))
        datadir = self.root / "mysql"
        subprocess.run([_which("mariadb-install-db") or "mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"], capture_output=True, check=True, timeout=timeout)
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={datadir}", "--user=root", "--bind-address=127.0.0.1",
                                 f"--port={self.ports['mariadb']}", f"--socket={self.root / 'mysql.sock'}",
                                 f"--pid-file={self.root / 'mariadbd.pid'}", "--skip-log-bin"])
        wait_for("MariaDB", lambda: _port_open(self.ports["mariadb"]), timeout, failed=self._died("mariadbd"))
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        wait_for("slurmdbd", lambda: _port_open(self.ports["slurmdbd"]), timeout, failed=self._died("slurmdbd"))
        wait_for("the cluster's record in slurmdbd", self._add_cluster, timeout, poll=1, failed=self._died("slurmdbd"))
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        wait_for("slurmctld", lambda: _port_open(self.ports["slurmctld"]), timeout, failed=self._died("slurmctld"))
        self._spawn("slurmd", ["slurmd", "-D"])
        wait_for(f"node {self.node} to be idle", lambda: "idle" in self.node_state(), timeout, poll=0.5, failed=self._died("slurmd"))

    def _add_cluster(self) -> bool:
        """slurmctld reports to slurmdbd only for a cluster it knows (retried: slurmdbd opens its port before it answers)."""
        proc = self.run("sacctmgr", "-i", "add", "cluster", CLUSTER, check=False)
        return proc.returncode == 0 or "already exists" in proc.stdout + proc.stderr

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()

    def stop(self) -> None:
        """Cancel what is still queued, then stop each daemon this object started, by its pid, newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--user", "root", check=False)
                wait_for("the cancelled jobs to end", lambda: not self.run("squeue", "-h", check=False).stdout.strip(), 30)
            except (TimeoutError, subprocess.SubprocessError):
                pass  # stopping slurmd below ends them too
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    """Bring a cluster up, print how to use it, keep it until Ctrl-C."""
    reason = unavailable()
    if reason:
        sys.exit(f"cannot start a local Slurm cluster: {reason}")
    with LocalSlurm() as cluster:
        print(f"a one-node Slurm cluster ({cluster.node}, {cluster.cpus} CPUs, partition {PARTITION}) runs from {cluster.root}")
        print(f"in another shell:\n  export SLURM_CONF={cluster.env['SLURM_CONF']}\n  sinfo; python -m featviz -m launcher=slurm ...")
        print("Ctrl-C stops it")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
