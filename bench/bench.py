#!/usr/bin/env python3
"""bench/run.sh's measuring engine (measure-only; needs root, cgroup v1).

    bench.py disk FILE OUT.json               direct-I/O disk figures (bench/disk)
    bench.py tools GGUF BUNDLE OUT.json       fm-convert / fm-verify vs dd / sha256sum
    bench.py matrix --tag T --gguf G --bundle B --out RESULTS.jsonl [options]
    bench.py report DIR                       DIR/RESULTS.md + plot data (see report.py)

Every measured program is a child of this process: it joins a cgroup-v1
memory group (/sys/fs/cgroup/memory/fm-bench-<limit>), then execs. This
process waits with waitid(WNOWAIT) and reads the zombie's /proc/PID/io
(read_bytes: bytes its reads, direct or buffered, made the block layer
fetch) before reaping it with wait4 (ru_maxrss: peak RSS). The group's
memory.max_usage_in_bytes (page cache included) and failcnt are recorded
too. A cold run starts with sync; echo 3 > /proc/sys/vm/drop_caches; a
warm run follows the cold run of the same program in the same group, so
what it finds cached was charged to that group (within its limit)."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CG_ROOT = "/sys/fs/cgroup/memory"
PY = os.environ.get("PYTHON", "/work/venv/bin/python")


def log(*a):
    print(*a, flush=True)


def parse_size(s):
    s = s.strip().upper()
    if s in ("0", "NONE", "UNLIMITED", "-"):
        return 0
    mul = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMG" else s) * mul)


def size_name(b):
    if b == 0:
        return "unlimited"
    if b % (1 << 30) == 0:
        return "%dG" % (b >> 30)
    return "%dM" % (b >> 20)


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Group:
    def __init__(self, limit):
        self.limit = limit
        self.path = os.path.join(CG_ROOT, "fm-bench-" + size_name(limit))
        self.remove()
        os.mkdir(self.path)
        if limit:
            self.write("memory.limit_in_bytes", limit)
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                self.write("memory.memsw.limit_in_bytes", limit)

    def write(self, name, v):
        with open(os.path.join(self.path, name), "w") as f:
            f.write("%d\n" % v)

    def read(self, name):
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return ""

    def reset_peak(self):
        for n in ("memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes", "memory.failcnt"):
            try:
                self.write(n, 0)
            except OSError:
                pass

    def oom_kills(self):
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return None

    def remove(self):
        if os.path.isdir(getattr(self, "path", "")):
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    return
                except OSError:
                    time.sleep(0.1)


def run_child(argv, group=None, timeout=None, stdout=None, stderr=None, env=None):
    """Fork, join group, exec argv; returns a dict of measurements."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            if group is not None:
                with open(os.path.join(group.path, "cgroup.procs"), "w") as f:
                    f.write("%d\n" % os.getpid())
            if stdout is not None:
                fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
            if stderr is not None:
                fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        except Exception as e:  # noqa: BLE001
            os.write(2, ("exec %s: %s\n" % (argv[0], e)).encode())
        os._exit(127)
    timed_out = False
    killed_at = None
    while True:
        r = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if r is not None:
            break
        el = time.monotonic() - t0
        if timeout and el > timeout and killed_at is None:
            timed_out = True
            killed_at = el
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    wall = time.monotonic() - t0
    io = {}
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, v = line.split(":")
                io[k] = int(v)
    except OSError:
        pass
    _, status, ru = os.wait4(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    return {"rc": rc, "timed_out": timed_out, "wall_s": wall, "read_bytes": io.get("read_bytes"),
            "rchar": io.get("rchar"), "peak_rss_bytes": ru.ru_maxrss * 1024, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime}


# ---------------------------------------------------------------- disk

def cmd_disk(a):
    disk = a.disk_bin
    res = {"file": a.file, "runs": []}
    plan = [("seq", 4 << 20, 1), ("seq", 4 << 20, 4), ("seq", 16 << 20, 8), ("rand", 16 << 10, 1),
            ("rand", 16 << 10, 16), ("rand", a.blob, 16), ("rand", a.blob, 64)]
    for mode, bs, th in plan:
        bs = bs // 4096 * 4096
        out = subprocess.run([disk, a.file, mode, str(bs), str(th), str(a.seconds)], check=True,
                             capture_output=True, text=True).stdout.split()
        d = {"mode": mode, "block": bs, "threads": th, "bytes": int(out[3]), "seconds": float(out[4]),
             "MBps": float(out[5]), "iops": float(out[6])}
        res["runs"].append(d)
        log("  disk %-4s block %8d  threads %2d: %7.1f MB/s  %8.0f IOPS" % (mode, bs, th, d["MBps"], d["iops"]))
    seq = max(r["MBps"] for r in res["runs"] if r["mode"] == "seq")
    res["seq_MBps"] = seq
    res["rand16k_MBps"] = max(r["MBps"] for r in res["runs"] if r["mode"] == "rand" and r["block"] == 16384)
    res["rand_blob_MBps"] = max(r["MBps"] for r in res["runs"] if r["block"] == a.blob // 4096 * 4096)
    res["disk_Bps"] = max(r["MBps"] for r in res["runs"]) * 1e6
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# ---------------------------------------------------------------- tools

def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def cmd_tools(a):
    gguf, bundle = a.gguf, a.bundle
    d = os.path.dirname(os.path.abspath(bundle))
    size_in = os.path.getsize(gguf)
    res = {"gguf": gguf, "gguf_bytes": size_in, "rounds": a.rounds, "runs": {}}

    def rec(name, mbps, extra=""):
        res["runs"].setdefault(name, []).append(mbps)
        log("  %-28s %7.1f MB/s %s" % (name, mbps, extra))

    tmp = os.path.join(d, "fm-bench-tools.fmb")
    ddf = os.path.join(d, "fm-bench-dd.tmp")
    for r in range(a.rounds):
        # fm-convert, cold input; MB/s = output bytes / wall (as fm-convert reports)
        for p in (tmp, tmp + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)
        drop_caches()
        m = run_child([a.convert, gguf, "-o", tmp, "-t", str(a.threads), "--force"],
                      stdout="/tmp/fm-bench-conv.out", stderr="/tmp/fm-bench-conv.err")
        if m["rc"] != 0:
            sys.exit("fm-convert failed: " + open("/tmp/fm-bench-conv.err").read())
        out_b = os.path.getsize(tmp)
        res["bundle_bytes"] = out_b
        rec("fm-convert", out_b / m["wall_s"] / 1e6, "(%.1f s)" % m["wall_s"])
        # dd writing the same number of bytes, direct + fsync
        cnt = (out_b + (16 << 20) - 1) >> 24
        drop_caches()
        m = run_child(["dd", "if=/dev/zero", "of=" + ddf, "bs=16M", "count=%d" % cnt, "oflag=direct",
                       "conv=fsync"], stdout="/dev/null", stderr="/dev/null")
        rec("dd write (direct, fsync)", cnt * (16 << 20) / m["wall_s"] / 1e6)
        os.unlink(ddf)
        # dd write through the page cache + fsync (what a normal writer does)
        drop_caches()
        m = run_child(["dd", "if=/dev/zero", "of=" + ddf, "bs=16M", "count=%d" % cnt, "conv=fsync"],
                      stdout="/dev/null", stderr="/dev/null")
        rec("dd write (buffered, fsync)", cnt * (16 << 20) / m["wall_s"] / 1e6)
        os.unlink(ddf)
        # dd copying the GGUF (read + write + fsync: the I/O fm-convert has to do, without the work)
        drop_caches()
        m = run_child(["dd", "if=" + gguf, "of=" + ddf, "bs=16M", "conv=fsync"], stdout="/dev/null",
                      stderr="/dev/null")
        rec("dd copy GGUF (buffered, fsync)", size_in / m["wall_s"] / 1e6)
        os.unlink(ddf)
        # readers of the bundle, each cold
        for name, argv in (("fm-verify", [a.verify, "-t", str(a.threads), tmp]),
                           ("fm-verify --direct", [a.verify, "-t", str(a.threads), "--direct", tmp]),
                           ("dd read", ["dd", "if=" + tmp, "of=/dev/null", "bs=8M"]),
                           ("dd read (direct)", ["dd", "if=" + tmp, "of=/dev/null", "bs=8M", "iflag=direct"]),
                           ("sha256sum", ["sha256sum", tmp])):
            drop_caches()
            m = run_child(argv, stdout="/tmp/fm-bench-tool.out", stderr="/tmp/fm-bench-tool.err")
            if m["rc"] != 0:
                sys.exit("%s failed: %s" % (name, open("/tmp/fm-bench-tool.err").read()))
            rec(name, out_b / m["wall_s"] / 1e6, "(%.1f s)" % m["wall_s"])
    os.unlink(tmp)
    res["median"] = {k: median(v) for k, v in res["runs"].items()}
    md = res["median"]
    res["convert_vs_dd_write"] = md["fm-convert"] / md["dd write (direct, fsync)"]
    res["convert_vs_dd_write_buffered"] = md["fm-convert"] / md["dd write (buffered, fsync)"]
    res["convert_vs_dd_copy"] = md["fm-convert"] / md["dd copy GGUF (buffered, fsync)"]
    best_verify = max(md["fm-verify"], md["fm-verify --direct"])
    res["verify_vs_min_dd_sha"] = md["fm-verify"] / min(md["dd read"], md["sha256sum"])
    res["verify_direct_vs_min_dd_sha"] = md["fm-verify --direct"] / min(md["dd read"], md["sha256sum"])
    res["best_verify_vs_min_dd_sha"] = best_verify / min(md["dd read"], md["sha256sum"])
    log("  fm-convert / dd write (direct): %.2f   fm-verify / min(dd read, sha256sum): %.2f" %
        (res["convert_vs_dd_write"], res["verify_vs_min_dd_sha"]))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# ---------------------------------------------------------------- meta

def model_facts(path):
    import gguf
    r = gguf.GGUFReader(path)
    f = {"file": path, "bytes": os.path.getsize(path), "expert_bytes": 0, "dense_bytes": 0}
    for k in ("block_count", "expert_count", "expert_used_count"):
        fld = r.fields.get("qwen3moe." + k)
        f[k] = int(fld.parts[fld.data[0]][0])
    for t in r.tensors:
        if "_exps." in t.name:
            f["expert_bytes"] += int(t.n_bytes)
        else:
            f["dense_bytes"] += int(t.n_bytes)
    n_x = f["block_count"] * f["expert_count"]
    f["n_experts_total"] = n_x
    f["expert_blob_avg_bytes"] = f["expert_bytes"] / n_x
    f["expert_bytes_per_token"] = f["expert_blob_avg_bytes"] * f["expert_used_count"] * f["block_count"]
    return f


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def cmd_meta(a):
    import llama_cpp
    m = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": sh("git rev-parse HEAD"),
         "dirty": sh("git status --porcelain --untracked-files=no | wc -l") != "0",
         "untracked_sources": int(sh("git ls-files -o --exclude-standard -- '*.c' '*.h' | wc -l") or 0),
         # the C sources as they were when measured (the tree has uncommitted work)
         "source_sha256": sh("cat $(ls formats/*.[ch] runtime/*.[ch] convert/*.[ch] pack/*.[ch] tools/*.c | sort)"
                             " | sha256sum | cut -c1-16"), "kernel": sh("uname -r"),
         "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(), "cores": os.cpu_count(),
         "mem_total_kib": int(sh("awk '/MemTotal/ {print $2}' /proc/meminfo") or 0),
         "disk": sh("df -h %s | tail -n 1" % a.models[0]), "llama_cpp_python": llama_cpp.__version__,
         "cc": sh("cc --version | head -n 1"), "loadavg": open("/proc/loadavg").read().strip(), "models": {}}
    for p in a.models:
        m["models"][p] = model_facts(p)
    with open(a.out, "w") as f:
        json.dump(m, f, indent=1)


# ---------------------------------------------------------------- matrix

def prompt_text(n_words):
    # n_words synthetic one-token words (+ BOS): see gen_qwen3moe.py's vocab
    return " ".join("t%d" % (1000 + 7919 * i % 150000) for i in range(n_words))


def fm_argv(a, bundle, threads, stats, limited, setup="stream"):
    v = [a.fm_run, bundle, "-p", prompt_text(a.prompt_words), "-n", str(a.n), "-t", str(threads),
         "--ctx", str(a.ctx), "--seed", "1", "--stats", stats]
    if setup in ("direct", "cached"):  # fm:direct / fm:cached force the I/O mode
        v += ["--io", setup]
    elif setup.startswith("budget="):  # fm:budget=20G: that --ram-budget, --io cached
        v += ["--ram-budget", setup.split("=", 1)[1], "--io", "cached"]
    elif limited and a.fm_io:
        v += ["--io", a.fm_io]
    if not limited and a.fm_ram_budget:
        v += ["--ram-budget", a.fm_ram_budget]
    return v


def llama_argv(a, gguf, threads, stats, lazy):
    v = [PY, os.path.join(HERE, "llama_run.py"), gguf, "--prompt", prompt_text(a.prompt_words), "-n",
         str(a.n), "-t", str(threads), "--ctx", str(a.ctx), "--stats", stats]
    if lazy:
        v.append("--lazy")
    elif cpu_has_amx() and os.environ.get("FM_BENCH_LLAMA_AMX") != "1":
        v.append("--no-amx")  # llama.cpp's AMX kernel crashes on this model (bench/README.md)
    return v


def cpu_has_amx():
    with open("/proc/cpuinfo") as f:
        return " amx_tile" in f.read()


def one(a, prog, setup, limit, threads, cache, group, n_done):
    tag = "%s-%s-%s-%s-t%d-%s" % (a.tag, prog, setup, size_name(limit), threads, cache)
    stats = os.path.join(a.logdir, tag + ".json")
    if os.path.exists(stats):
        os.unlink(stats)
    if prog == "fm":
        argv = fm_argv(a, a.bundle, threads, stats, limit != 0, setup)
        timeout = a.fm_timeout
    else:
        argv = llama_argv(a, a.gguf, threads, stats, setup == "lazy")
        timeout = a.llama_timeout
    probe = None
    if a.disk_probe and limit:
        # the disk's bandwidth right now (the machine is shared: it varies run to run)
        probe = []
        for mode, bs, th in (("seq", 4 << 20, 4), ("rand", 3 << 20, 16)):
            # the file this program reads (the host may cache some files better than others)
            o = subprocess.run([a.disk_probe, a.bundle if prog == "fm" else a.gguf, mode, str(bs), str(th), "3"],
                               capture_output=True,
                               text=True).stdout.split()
            if len(o) == 7:
                probe.append(float(o[5]) * 1e6)
        probe = max(probe) if probe else None
    if cache == "cold":
        drop_caches()
    group.reset_peak()
    la = open("/proc/loadavg").read().split()[0]
    m = run_child(argv, group=group, timeout=timeout, stdout=os.path.join(a.logdir, tag + ".out"),
                  stderr=os.path.join(a.logdir, tag + ".err"))
    st = {}
    try:
        with open(stats) as f:
            st = json.load(f)
    except (OSError, ValueError):
        pass
    rec = {"tag": a.tag, "program": prog, "setup": setup, "limit": limit, "threads": threads, "cache": cache,
           "n_requested": a.n, "prompt_words": a.prompt_words, "loadavg_before": float(la),
           "group_peak_bytes": int(group.read("memory.max_usage_in_bytes") or 0),
           "group_failcnt": int(group.read("memory.failcnt") or 0), "oom_kills": group.oom_kills(),
           "timeout_s": timeout, "zipf": a.zipf, "disk_probe_Bps": probe, "model_bytes": os.path.getsize(a.gguf if prog == "llama" else a.bundle)}
    rec.update(m)
    for k in ("prompt_tokens", "prompt_seconds", "prompt_tok_s", "decode_tokens", "decode_seconds", "decode_tok_s",
              "decode_expert_cache_hit_rate", "expert_cache_hit_rate", "decode_bytes_read_per_token",
              "prompt_bytes_read_per_token", "expert_cache_bytes", "dense_bytes", "load_seconds", "complete",
              "expert_bytes_read", "expert_read_seconds"):
        if k in st:
            rec[k] = st[k]
    if prog == "fm":
        rec["complete"] = m["rc"] == 0 and st.get("decode_tokens") == a.n
        try:
            for line in open(os.path.join(a.logdir, tag + ".err")):
                if line.startswith("fm-run: experts:"):
                    rec["fm_experts_line"] = line.strip()
        except OSError:
            pass
    if prog == "llama" and (m["timed_out"] or m["rc"] != 0) and st.get("decode_tokens"):
        rec["partial"] = True
    line = "  %-34s rc %4d%s  prompt %6s tok/s  decode %7s tok/s (%s/%d tok)  read %7.0f MB  rss %6.0f MiB  grp %6.0f MiB" % (
        tag, m["rc"], " TIMEOUT" if m["timed_out"] else "", "%.2f" % rec["prompt_tok_s"] if "prompt_tok_s" in rec else "-",
        "%.3f" % rec["decode_tok_s"] if "decode_tok_s" in rec else "-", rec.get("decode_tokens", 0), a.n,
        (m["read_bytes"] or 0) / 1e6, m["peak_rss_bytes"] / 1048576, rec["group_peak_bytes"] / 1048576)
    if "decode_expert_cache_hit_rate" in rec:
        line += "  hit %.3f" % rec["decode_expert_cache_hit_rate"]
    log(line)
    with open(a.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    return rec


def cmd_matrix(a):
    os.makedirs(a.logdir, exist_ok=True)
    limits = [parse_size(s) for s in a.limits.split()]
    threads = [int(t) for t in a.threads.split()]
    runs = [r for r in a.runs.split()]  # prog:setup, e.g. fm:stream llama:lazy llama:default
    for limit in limits:
        for t in threads:
            if limit and t != threads[-1] and not a.all_threads_limited:
                continue
            for pr in runs:
                prog, setup = pr.split(":")
                if limit and setup == "default" and not a.llama_default_limited:
                    continue
                if not limit and setup == "lazy" and not a.llama_lazy_unlimited:
                    continue
                g = Group(limit)
                try:
                    for i, cache in enumerate(["cold"] + ["warm"] * a.warm_repeats):
                        r = one(a, prog, setup, limit, t, cache, g, i)
                        if cache == "cold" and (r["timed_out"] or r["rc"] != 0) and limit:
                            # a warm repeat would time out the same way
                            break
                finally:
                    g.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("disk")
    d.add_argument("file")
    d.add_argument("out")
    d.add_argument("--disk-bin", required=True)
    d.add_argument("--blob", type=int, default=3 << 20, help="fm expert blob size for the random test")
    d.add_argument("--seconds", type=float, default=6)
    t = sub.add_parser("tools")
    t.add_argument("gguf")
    t.add_argument("bundle")
    t.add_argument("out")
    t.add_argument("--convert", required=True)
    t.add_argument("--verify", required=True)
    t.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    t.add_argument("--rounds", type=int, default=1)
    me = sub.add_parser("meta")
    me.add_argument("out")
    me.add_argument("models", nargs="+")
    m = sub.add_parser("matrix")
    m.add_argument("--tag", required=True)
    m.add_argument("--gguf", required=True)
    m.add_argument("--bundle", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--logdir", required=True)
    m.add_argument("--fm-run", required=True)
    m.add_argument("--limits", default="0 8G 4G 2G")
    m.add_argument("--threads", default="2")
    m.add_argument("--runs", default="fm:stream llama:lazy llama:default")
    m.add_argument("-n", type=int, default=32)
    m.add_argument("--prompt-words", type=int, default=31)
    m.add_argument("--ctx", type=int, default=512)
    m.add_argument("--warm-repeats", type=int, default=1)
    m.add_argument("--fm-io", default="direct")
    m.add_argument("--fm-ram-budget", default="")
    m.add_argument("--fm-timeout", type=float, default=1800)
    m.add_argument("--llama-timeout", type=float, default=900)
    m.add_argument("--all-threads-limited", action="store_true")
    m.add_argument("--llama-default-limited", action="store_true")
    m.add_argument("--llama-lazy-unlimited", action="store_true")
    m.add_argument("--disk-probe", default="", help="bench/disk binary: measure the disk before each limited run")
    m.add_argument("--zipf", type=float, default=0.0, help="recorded with each run (the model's --zipf)")
    a = ap.parse_args()
    {"disk": cmd_disk, "tools": cmd_tools, "matrix": cmd_matrix, "meta": cmd_meta}[a.cmd](a)


if __name__ == "__main__":
    main()
