#!/usr/bin/python3
"""Executes deploy/colab/ferry.ipynb outside Colab (make notebook-check).

The notebook runs cell by cell in a real IPython kernel (nbclient) with:
  - google.colab.userdata stubbed: secrets come from a JSON file, a missing one
    raises SecretNotFoundError as Colab does;
  - FERRY_RELEASE_URL pointing at a locally built binary (file://, with a
    checksums.txt beside it, so the download-and-verify path runs);
  - BOT_API_URL pointing at the Bot API stand-in (telegramtest/cmd/fakebot),
    whose recorded calls show what ferry did.
After the serve cell a /start is injected and ferry's reply is awaited.
The tunnel cell is skipped (NOTEBOOK_TUNNEL=skip, the default) or run twice
against a fake cloudflared (NOTEBOOK_TUNNEL=fake): the second run must stop the
first tunnel, and the webhook must be registered at the second tunnel's URL,
which only its --metrics /quicktunnel endpoint tells.

Arguments: WORKDIR FERRY_BINARY FAKEBOT_BINARY (the shell wrapper builds them).
"""
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "deploy", "colab", "ferry.ipynb")
TOKEN = "1234567890:fakebot-local-token-not-a-secret"
USER = 1001

STUB = '''
"""Stand-in for google.colab.userdata (make notebook-check)."""
import json, os

class SecretNotFoundError(KeyError):
    pass

class NotebookAccessError(Exception):
    pass

def get(key):
    with open(os.environ["FERRY_STUB_SECRETS"]) as f:
        secrets = json.load(f)
    if key not in secrets:
        raise SecretNotFoundError(key)
    return secrets[key]
'''

FAKE_CLOUDFLARED = '''#!/usr/bin/python3
# Fake cloudflared for make notebook-check: `tunnel --metrics ADDR --url URL`
# serves GET /quicktunnel on ADDR like cloudflared, with a hostname of its own
# (empty for the first second, as while a real tunnel connects), and prints
# it on stderr as cloudflared does. Each start is appended to $FAKE_TUNNEL_LOG.
import http.server, json, os, sys, time
args = sys.argv[1:]
metrics = args[args.index("--metrics") + 1]
host = "check-%d.trycloudflare.com" % os.getpid()
started = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/quicktunnel":
            self.send_error(404)
            return
        body = json.dumps({"hostname": host if time.time() - started > 1 else ""}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
h, p = metrics.rsplit(":", 1)
srv = http.server.HTTPServer((h, int(p)), H)
with open(os.environ["FAKE_TUNNEL_LOG"], "a") as f:
    f.write("%d %s\\n" % (os.getpid(), host))
print("INF |  https://%s  |" % host, file=sys.stderr, flush=True)
srv.serve_forever()
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=70):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def say(*a):
    print("notebook-check:", *a, flush=True)


def main():
    work, ferry, fakebot = sys.argv[1:4]
    tunnel_mode = os.environ.get("NOTEBOOK_TUNNEL", "skip")
    if tunnel_mode not in ("skip", "fake"):
        sys.exit("NOTEBOOK_TUNNEL must be skip or fake")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    home = os.path.join(work, "home")
    os.makedirs(home)

    # A "release": the binary under its release name, and checksums.txt.
    rel = os.path.join(work, "release")
    os.makedirs(rel)
    name = f"ferry-linux-{arch}"
    shutil.copy(ferry, os.path.join(rel, name))
    with open(os.path.join(rel, name), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(rel, "checksums.txt"), "w") as f:
        f.write(f"{digest}  {name}\n")

    stub = os.path.join(work, "stub", "google", "colab")
    os.makedirs(stub)
    for d in (os.path.dirname(stub), stub):
        open(os.path.join(d, "__init__.py"), "w").close()
    with open(os.path.join(stub, "userdata.py"), "w") as f:
        f.write(STUB)
    fakebin = os.path.join(work, "fakebin")
    os.makedirs(fakebin)
    if tunnel_mode == "fake":
        path = os.path.join(fakebin, "cloudflared")
        with open(path, "w") as f:
            f.write(FAKE_CLOUDFLARED)
        os.chmod(path, 0o755)

    bot_port = free_port()
    bot_url = f"http://127.0.0.1:{bot_port}"
    fb_log = open(os.path.join(work, "fakebot.log"), "wb")
    fb = subprocess.Popen([fakebot, "-addr", f"127.0.0.1:{bot_port}", "-tokens", TOKEN],
                          stdout=subprocess.PIPE, stderr=fb_log)
    try:
        line = fb.stdout.readline()
        if not line:
            sys.exit("fakebot did not start; see " + fb_log.name)
        run_notebook(work, home, rel, name, digest, bot_url, tunnel_mode)
    finally:
        # Whatever the notebook left running when a cell failed.
        for pid_file in ("ferry.pid", "cloudflared.pid"):
            try:
                os.killpg(int(open(os.path.join(home, pid_file)).read()), signal.SIGTERM)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
        fb.terminate()
        fb.wait(10)


def run_notebook(work, home, rel, name, digest, bot_url, tunnel_mode):
    secrets = os.path.join(work, "secrets.json")
    with open(secrets, "w") as f:
        json.dump({"BOT_TOKENS": TOKEN, "ADMIN_IDS": str(USER), "BOT_API_URL": bot_url,
                   "WEBHOOK_SECRET": "notebook-check-webhook-secret"}, f)
    env = {
        "FERRY_RELEASE_URL": "file://" + os.path.join(rel, "ferry-linux-{arch}"),
        "FERRY_HOME": home,
        "FERRY_BIN": os.path.join(home, "bin", "ferry"),
        "FERRY_PORT": str(free_port()),
        "TUNNEL_METRICS": f"127.0.0.1:{free_port()}",
        "FOLLOW_SECONDS": "2",
        "FERRY_STUB_SECRETS": secrets,
        "FAKE_TUNNEL_LOG": os.path.join(work, "fake-tunnels.txt"),
        "PYTHONPATH": os.path.join(work, "stub"),
        "PATH": os.path.join(work, "fakebin") + ":" + os.environ["PATH"],
        "LOG_FORMAT": "json",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # quiets ipykernel's debugger at start-up
    }
    os.environ.update(env)  # the kernel inherits them

    nb = nbformat.read(NOTEBOOK, as_version=4)
    by_tag = {}
    for i, cell in enumerate(nb.cells):
        for tag in cell.get("metadata", {}).get("tags", []):
            by_tag[tag] = (i, cell)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": home}})
    timings = []

    def run(tag):
        i, cell = by_tag[tag]
        t = time.monotonic()
        client.execute_cell(cell, i)
        timings.append((tag, time.monotonic() - t))
        return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")

    t0 = time.monotonic()
    with client.setup_kernel():
        run("settings")
        out = run("install")
        if f"sha256 verified: {digest}" not in out:
            sys.exit("install cell did not verify the checksum:\n" + out)
        version = subprocess.run([env["FERRY_BIN"], "version"], capture_output=True, text=True, check=True).stdout.strip()
        if version not in out:
            sys.exit("install cell did not show `ferry version`:\n" + out)
        say("installed from the release URL, checksum verified:", version)
        out = run("secrets")
        if "BOT_TOKENS" not in out.split("missing:")[0] or TOKEN in out:
            sys.exit("secrets cell output is wrong (or shows a secret):\n" + out)
        out = run("data")
        if "embedded SQLite" not in out or "migration" not in out:
            sys.exit("data cell did not migrate the embedded database:\n" + out)
        out = run("serve")
        say(out.strip().splitlines()[-1])

        req = urllib.request.Request(f"{bot_url}/fakebot/message?text=/start&from={USER}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            sent = json.load(r)
        calls = get_json(f"{bot_url}/fakebot/calls?method=sendMessage&min=1&timeout=60s")
        reply = calls[0]["params"]
        if reply.get("chat_id") != str(USER) or "moves big files into Telegram" not in reply.get("text", ""):
            sys.exit(f"unexpected reply to /start: {reply}")
        say(f"ferry answered /start (update {sent['update_id']}) with:", reply["text"].splitlines()[0])
        run("follow")

        pid_file = os.path.join(home, "ferry.pid")
        ferry_pid = int(open(pid_file).read())
        tunnels = []
        if tunnel_mode == "fake":
            # Twice: the second must stop the first tunnel and register its own URL.
            for _ in range(2):
                run("tunnel")
            tunnels = [l.split() for l in open(env["FAKE_TUNNEL_LOG"]).read().splitlines()]
            if len(tunnels) != 2:
                sys.exit(f"expected 2 tunnel starts, got {tunnels}")
            if alive(int(tunnels[0][0])):
                sys.exit("the first tunnel is still running after the tunnel cell ran again")
            hooks = get_json(f"{bot_url}/fakebot/calls?method=setWebhook&min=2")
            want = f"https://{tunnels[1][1]}/tg/{TOKEN.split(':')[0]}"
            if [h["params"]["url"] for h in hooks][-1] != want or not all(h["ok"] for h in hooks):
                sys.exit(f"webhook registered at {[h['params']['url'] for h in hooks]}, want {want} last")
            say("tunnel cell twice: first tunnel stopped, webhook at the second's URL", want)
            ferry_pid = int(open(pid_file).read())
        else:
            say("tunnel cell skipped (NOTEBOOK_TUNNEL=fake runs it against a fake cloudflared)")
        run("stop")
        if alive(ferry_pid) or os.path.exists(pid_file):
            sys.exit("ferry still runs after the stop cell")
        if tunnel_mode == "fake":
            if alive(int(tunnels[1][0])) or os.path.exists(os.path.join(home, "cloudflared.pid")):
                sys.exit("the tunnel still runs after the stop cell")
            if not get_json(f"{bot_url}/fakebot/calls?method=deleteWebhook&min=1")[-1]["ok"]:
                sys.exit("the stop cell did not delete the webhook")
            say("stop cell: webhook deleted, ferry and the tunnel stopped")
        else:
            say("stop cell: ferry stopped")
    say("cells:", ", ".join(f"{t} {s:.1f}s" for t, s in timings), f"(total {time.monotonic() - t0:.1f}s)")
    say("passed")


if __name__ == "__main__":
    main()
