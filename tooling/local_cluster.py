"""Start and stop the local single-machine stack: a Ray head, then `serve deploy`.

Ports and the temp dir are Tierserve's own, so another Ray on the machine is left alone.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from app.config.loader import REPO_ROOT
from app.config.schema import RayServeRuntime
from app.engine_shm import LEDGER_ENV, mapped_shm_segments, read_ledger, remove_orphaned_segments


class StackError(RuntimeError):
    """A failure the user can act on, told in one line."""


@dataclass(frozen=True)
class LocalStack:
    gcs_port: int = 6390
    dashboard_port: int = 8265
    metrics_port: int = 8090
    serve_port: int = 8000
    # HAProxy's own ports when Serve runs it (configs/server.yaml ray_serve.haproxy).
    haproxy_metrics_port: int = 9101
    haproxy_stats_port: int = 8404
    # Logical CPUs Ray may hand out: each vLLM tier takes a CPU bundle for its
    # replica and one for its engine, on a 2-core machine too.
    num_cpus: int = 8
    temp_dir: str = "/tmp/tierserve-ray"

    @property
    def shm_ledger(self) -> Path:
        """Where the stack's replicas record their engines' pids and /dev/shm segments."""
        return Path(self.temp_dir) / "tierserve-shm"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"


def free_port() -> int:
    """A free TCP port (for tests and benchmarks that start their own servers), taken from
    between Ray's worker ports (10002-19999) and the kernel's ephemeral range: a port the
    kernel hands out for `bind(0)` is ephemeral, and the many connections a starting Ray
    cluster opens can take it before our server binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, max(20001, low - 1))
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # crowded machine: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_env() -> dict[str, str]:
    """Environment for Ray and the vLLM processes it starts: offline, caches in our dirs."""
    cache = REPO_ROOT / ".tierserve" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray 2.60 turns token auth on for new clusters; its clients send the token
        # (~/.ray/auth_token) only when told the mode.
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
        # The first chunk of a stream matters more than Serve's default coalescing.
        "RAY_SERVE_ENABLE_TASK_EVENTS": os.environ.get("RAY_SERVE_ENABLE_TASK_EVENTS", "0"),
    }


def ray_node_env(stack: LocalStack, runtime: RayServeRuntime) -> dict[str, str]:
    """Env for a Ray node of `stack`: offline engines plus Serve's data-path switches."""
    haproxy_dir = Path(stack.temp_dir) / "haproxy"  # the stack's own, not the machine's
    haproxy_dir.mkdir(parents=True, exist_ok=True)
    return {**engine_env(),
            **runtime.env(stack.haproxy_metrics_port, stack.haproxy_stats_port, str(haproxy_dir)),
            LEDGER_ENV: str(stack.shm_ledger)}


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def auth_token_path(env: dict[str, str] | None = None) -> Path:
    """Where Ray's clients read the token from: RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    env = os.environ if env is None else env
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return Path(env.get("RAY_AUTH_TOKEN_PATH") or home / ".ray" / "auth_token")


def ensure_auth_token(env: dict[str, str]) -> Path | None:
    """Under token auth, create Ray's token if there is none (`ray get-auth-token --generate`,
    Ray's own way); never print it. Returns where it lives, or None when auth is off."""
    if env.get("RAY_AUTH_MODE", "").lower() != "token" or env.get("RAY_AUTH_TOKEN"):
        return None
    path = auth_token_path(env)
    if not path.is_file() or not path.read_text().strip():
        done = subprocess.run([_bin("ray"), "get-auth-token", "--generate"], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            raise StackError(f"could not create Ray's auth token at {path}: "
                             f"{done.stderr.strip().splitlines()[-1:] or 'no output'}")
    return path


_TOKEN_MISSING = ("couldn't find an authentication token", "no authentication token was found",
                  "file cannot be opened or is empty")
_TOKEN_REFUSED = ("Invalid authentication token", "authentication token is invalid")


def run_ray_cli(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a `ray`/`serve` command; a failure becomes a short message that says what to do."""
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        return done.stdout
    output = done.stdout + done.stderr
    token = auth_token_path(env)
    if any(marker in output for marker in _TOKEN_MISSING):
        raise StackError(f"{what}: the Ray cluster uses token auth and there is no token at {token}: "
                         "copy the token it was started with there (`ray get-auth-token` prints it "
                         "where the cluster was started), or set RAY_AUTH_TOKEN_PATH to that file")
    if any(marker in output for marker in _TOKEN_REFUSED):
        raise StackError(f"{what}: the Ray cluster refused the auth token in {token}; it was started "
                         "with another token (another HOME or user?): set RAY_AUTH_TOKEN_PATH to "
                         "that token's file, or stop the cluster with it")
    tail = "\n".join(output.strip().splitlines()[-15:])
    raise StackError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_ray(stack: LocalStack, runtime: RayServeRuntime, *, resources: dict[str, float] | None = None,
              object_store_bytes: int | None = None, loopback: bool = False) -> Path | None:
    """Start the head node; returns the auth token's path (None when token auth is off).
    `resources`: custom resources it advertises (node pools), none by default; `loopback`:
    the node's address is 127.0.0.1 (a multi-node cluster on this machine)."""
    busy = [p for p in (stack.gcs_port, stack.dashboard_port, stack.serve_port) if _port_in_use(p)]
    if busy:
        raise StackError(f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use: "
                         "is a Tierserve stack already up? `make down` first, or `tierserve up --port N`")
    env = ray_node_env(stack, runtime)
    token = ensure_auth_token(env)
    run_ray_cli(
        [_bin("ray"), "start", "--head", f"--port={stack.gcs_port}",
         f"--num-cpus={stack.num_cpus}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={stack.dashboard_port}", f"--metrics-export-port={stack.metrics_port}",
         f"--temp-dir={stack.temp_dir}", "--disable-usage-stats",
         *(["--node-ip-address=127.0.0.1"] if loopback else []),
         *node_options(resources, object_store_bytes)],
        env, "ray start")
    return token


def node_options(resources: dict[str, float] | None, object_store_bytes: int | None) -> list[str]:
    """`ray start` options for a node's custom resources and object store size."""
    options = [f"--resources={json.dumps(resources)}"] if resources else []
    if object_store_bytes:
        options.append(f"--object-store-memory={object_store_bytes}")
    return options


def raylets(stack: LocalStack) -> list:
    """The raylet (one per Ray node) of each node of the stack."""
    return [p for p in stack_processes(stack) if p.name() == "raylet"]


def start_worker(stack: LocalStack, runtime: RayServeRuntime, *, num_cpus: int,
                 resources: dict[str, float], object_store_bytes: int | None = None):
    """Join one more Ray node to the stack's head on this machine, all on loopback, with its
    own free ports; returns its raylet (psutil.Process), whose PID stops or kills the node."""
    before = {p.pid for p in raylets(stack)}
    run_ray_cli(
        [_bin("ray"), "start", f"--address=127.0.0.1:{stack.gcs_port}", "--node-ip-address=127.0.0.1",
         f"--num-cpus={num_cpus}", f"--metrics-export-port={free_port()}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats",
         *node_options(resources, object_store_bytes)],
        ray_node_env(stack, runtime), "ray start (worker node)")
    new = [p for p in raylets(stack) if p.pid not in before]
    if len(new) != 1:
        raise StackError(f"expected one new raylet after `ray start --address`, found {len(new)}")
    return new[0]


def serve_deploy(stack: LocalStack, config_file: Path) -> None:
    run_ray_cli([_bin("serve"), "deploy", str(config_file), "--address", stack.dashboard_url],
                engine_env(), "serve deploy")


def wait_ready(base_url: str, timeout_s: float = 600) -> dict:
    """Poll /readyz until every tier has answered its warm-up; StackError on timeout."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)  # `tierserve up` is ready when the stack is, not up to 2 s later
    raise StackError(f"Tierserve not ready after {timeout_s:.0f}s; last /readyz answer: {last}")


def start_private_stack(profile: str, temp_dir: str) -> LocalStack:
    """A stack for benchmarks: free ports, its own Ray temp dir and an empty keys database
    (so the API is open whatever keys the developer made), deployed the way `tierserve up`
    does it. Stop it with `stop(stack)`."""
    import yaml

    from app.config.loader import load_config
    from app.serve_config import render_serve_config

    stack = LocalStack(gcs_port=free_port(), dashboard_port=free_port(), metrics_port=free_port(),
                       serve_port=free_port(), haproxy_metrics_port=free_port(),
                       haproxy_stats_port=free_port(), temp_dir=temp_dir)
    config = load_config(profile)
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    # The raylet's env reaches every replica: this stack's own, empty keys database.
    os.environ[config.server.keys.db_url_env] = f"sqlite:///{temp_dir}/keys.db"
    cfg_file = Path(temp_dir) / "serve_config.yaml"
    cfg_file.write_text(yaml.safe_dump(render_serve_config(config, http_port=stack.serve_port),
                                       sort_keys=False))
    start_ray(stack, config.server.ray_serve, resources={p: 1 for p in config.node_pools()})
    serve_deploy(stack, cfg_file)
    wait_ready(stack.base_url, 900)
    return stack


def api_is_open(base_url: str) -> bool:
    """Whether the API answers without a key: an empty request is a 400 when open, 401 when
    keys are required (authentication comes first; nothing is generated either way)."""
    req = urllib.request.Request(f"{base_url}/v1/chat/completions", data=b"{}", method="POST",
                                 headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as exc:
        return exc.code != 401
    return True


def stop(stack: LocalStack, grace_s: float = 15) -> list[Path]:
    """Shut Serve down, stop the stack's own processes by PID (never another Ray of the
    user's), then remove the /dev/shm segments its engines left: those mapped now and those
    its replicas recorded, including replicas that died earlier."""
    recorded_procs, recorded_segments = read_ledger(stack.shm_ledger)
    procs = stack_processes(stack)
    ours = mapped_shm_segments([p.pid for p in procs]) | recorded_segments
    if procs and _port_in_use(stack.dashboard_port):
        try:  # graceful: replicas stop their engines; the processes below go either way
            run_ray_cli([_bin("serve"), "shutdown", "-y", "--address", stack.dashboard_url],
                        engine_env(), "serve shutdown")
        except StackError as exc:
            print(f"tierserve: {exc}", file=sys.stderr)
    procs = stack_processes(stack)  # + engines of replicas killed earlier, if any still run
    procs += [p for p in recorded_procs if p.pid not in {q.pid for q in procs}]
    for group in ray_stop_order(procs):
        terminate(group, grace_s / 3)  # `ray stop` splits its grace period alike
    for entry in stack.shm_ledger.glob("*.json"):
        entry.unlink(missing_ok=True)
    return remove_orphaned_segments(ours)


def ray_stop_order(procs: list) -> list[list]:
    """`procs` in the three groups `ray stop` stops one after another: raylets first (a raylet
    takes its workers and agents with it), then the rest, GCS last. Stopped all at once, GCS's
    last metrics flush hung on an agent that was itself stopping and GCS outlived a 15 s
    grace (SIGKILL); in this order the flush fails at once and each group ends in ~1-2 s."""
    import psutil

    def name(proc) -> str:
        try:
            return proc.name()
        except psutil.Error:
            return ""

    names = {proc.pid: name(proc) for proc in procs}
    raylets = [p for p in procs if names[p.pid] == "raylet"]
    gcs = [p for p in procs if names[p.pid] == "gcs_server"]
    rest = [p for p in procs if names[p.pid] not in ("raylet", "gcs_server")]
    return [group for group in (raylets, rest, gcs) if group]


def terminate(procs: list, grace_s: float) -> None:
    """SIGTERM, then SIGKILL whatever is still there after `grace_s`."""
    import psutil

    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)


def stack_processes(stack: LocalStack) -> list:
    """Every process of the local stack: Ray's daemons (found by temp dir) and their descendants."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if stack.temp_dir in cmd:
            roots.append(proc)
    seen = {}
    for root in roots:
        for proc in [root, *root.children(recursive=True)]:
            seen[proc.pid] = proc
    return list(seen.values())


def stack_memory_mb(stack: LocalStack) -> dict[str, float]:
    """RSS (double-counts shared pages) and PSS (shares split) of the whole stack, in MB."""
    import psutil

    rss = pss = 0
    procs = stack_processes(stack)
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return {"processes": len(procs), "rss_mb": rss / 2**20, "pss_mb": pss / 2**20}
