"""nginx: Debian's real nginx accepts the hub's config (and serves the limits and SSE it promises) and the tenant's."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from letsbe_fakes.tls_endpoint import self_signed
from letsbe_platform.testing import free_port

HUB_CERTS = "/etc/letsencrypt/live/hub.letsbe.biz/"
SNIPPETS = "/etc/nginx/snippets/"


def nginx_bin() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is missing: `make system-tools` installs Debian's nginx")
    return found


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A throwaway self-signed certificate, laid out as certbot does (fullchain.pem, privkey.pem)."""
    folder = tmp_path / "live"
    folder.mkdir()
    cert, key = self_signed(
        "letsbe.test", dt.datetime.now(dt.UTC) + dt.timedelta(days=1), also=("*.letsbe.test", "127.0.0.1")
    )
    (folder / "fullchain.pem").write_bytes(cert)
    (folder / "privkey.pem").write_bytes(key)
    return folder


def main_conf(tmp_path: Path, vhost: str) -> Path:
    """A minimal nginx.conf around one rendered vhost, everything under tmp_path."""
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    (tmp_path / "conf.d" / "site.conf").write_text(vhost)
    temp = "".join(f"{k}_temp_path {tmp_path}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}include {tmp_path}/conf.d/*.conf;\n}}\n"
    )
    return conf


def nginx_t(tmp_path: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_bin(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def render_hub(kit, certs: Path) -> str:
    """hub.conf with its install paths pointed at the repo's snippets and the test certificate."""
    text = (kit.hub / "nginx" / "hub.conf").read_text()
    assert HUB_CERTS in text and SNIPPETS in text
    return text.replace(HUB_CERTS, f"{certs}/").replace(SNIPPETS, f"{kit.hub}/nginx/snippets/")


# --- a small reader of nginx's syntax, to check what the config says rather than grep it ----------------------


def parse(text: str) -> list:
    """[(directive, [args], children-or-None)], comments dropped."""
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    pos = 0

    def block() -> list:
        nonlocal pos
        out: list = []
        words: list[str] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok == ";":
                out.append((words[0], words[1:], None))
                words = []
            elif tok == "{":
                out.append((words[0], words[1:], block()))
                words = []
            elif tok == "}":
                return out
            else:
                words.append(tok.strip("\"'"))
        return out

    return block()


def directives(block: list, name: str) -> list[list[str]]:
    return [args for d, args, _ in block if d == name]


def location(server: list, *match: str) -> list:
    found = [children for d, args, children in server if d == "location" and args == list(match)]
    assert len(found) == 1, f"location {' '.join(match)}"
    return found[0]


def https_server(tree: list, name: str) -> list:
    for d, _, children in tree:
        if (
            d == "server"
            and [name] in directives(children, "server_name")
            and any("ssl" in args for args in directives(children, "listen"))
        ):
            return children
    raise AssertionError(f"no HTTPS server for {name}")


# --- the hub ------------------------------------------------------------------------------------------------


def test_hub_config_passes_nginx_t(kit, certs, tmp_path):
    checked = nginx_t(tmp_path, main_conf(tmp_path, render_hub(kit, certs)))
    assert checked.returncode == 0, checked.stderr


def test_nginx_t_fails_on_a_broken_config(certs, tmp_path):
    checked = nginx_t(tmp_path, main_conf(tmp_path, "server { listen 443 ssl; limit_req zone=nowhere; }"))
    assert checked.returncode != 0


def test_hub_config_declares_the_rate_limits_sse_and_websocket_locations(kit):
    tree = parse((kit.hub / "nginx" / "hub.conf").read_text())
    zones = directives(tree, "limit_req_zone")
    assert ["$binary_remote_addr", "zone=public_api:10m", "rate=10r/s"] in zones
    assert ["$binary_remote_addr", "zone=tenant_api:10m", "rate=30r/s"] in zones
    server = https_server(tree, "hub.letsbe.biz")
    assert directives(location(server, "/api/v1/public/"), "limit_req") == [["zone=public_api", "burst=20", "nodelay"]]
    assert directives(location(server, "/api/v1/tenant/"), "limit_req") == [["zone=tenant_api", "burst=50", "nodelay"]]

    assert directives(location(server, "=", "/api/v1/public/stripe/webhook"), "limit_req") == []
    sse_pattern = "^/api/v1/(admin|customer)/orders/[^/]+/events$"
    sse = location(server, "~", sse_pattern)
    assert directives(sse, "proxy_buffering") == [["off"]]
    assert directives(sse, "proxy_cache") == [["off"]]
    assert directives(sse, "proxy_read_timeout") == [["3600s"]]
    assert re.search(sse_pattern, "/api/v1/admin/orders/4f1c/events")  # GET /api/v1/admin/orders/{id}/events
    assert re.search(sse_pattern, "/api/v1/customer/orders/4f1c/events")  # the portal's live progress
    assert not re.search(sse_pattern, "/api/v1/admin/orders/4f1c")  # the rest of the admin API stays buffered

    for ws in (location(server, "/api/v1/customer/ws"), location(server, "=", "/api/v1/tenant/relay/ws")):
        assert ["Upgrade", "$http_upgrade"] in directives(ws, "proxy_set_header")
        assert ["Connection", "$connection_upgrade"] in directives(ws, "proxy_set_header")

    headers = {args[0] for args in directives(server, "add_header")}
    assert {"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} <= headers
    assert directives(server, "ssl_protocols") == [["TLSv1.2", "TLSv1.3"]]


# --- the hub config, served for real on loopback -------------------------------------------------------------


class Upstream(http.server.ThreadingHTTPServer):
    """Stands in for hub-api or dns: answers 200 with its name and what it was asked, and an SSE stream whose
    second event waits for the test's go."""

    daemon_threads = True

    def __init__(self, name: str = "hub-api") -> None:
        self.name = name
        self.go = threading.Event()
        super().__init__(("127.0.0.1", 0), UpstreamHandler)


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall between

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: step 1 started\n\n")
            self.wfile.flush()
            self.server.go.wait(10)  # only once the client has seen the first event
            self.wfile.write(b"data: step 1 done\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode() if length else ""
        what = {
            "served_by": self.server.name,
            "method": self.command,
            "path": self.path,
            "body": received,
            "request_id": self.headers.get("X-Request-ID"),
        }
        body = json.dumps(what).encode() if self.path.startswith("/api/v1/tenant/") else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Served:
    url: str
    upstream: Upstream
    dns: Upstream
    certs: Path

    def client(self, **kwargs) -> httpx.Client:
        """A client that trusts the test certificate (nginx is reached on 127.0.0.1, as hub.letsbe.biz)."""
        tls = ssl.create_default_context(cafile=str(self.certs / "fullchain.pem"))
        return httpx.Client(base_url=self.url, verify=tls, headers={"Host": "hub.letsbe.biz"}, **kwargs)


@pytest.fixture
def served_hub(kit, certs, tmp_path) -> Iterator[Served]:
    """hub.conf run by a real nginx master on a loopback port, proxying to stand-ins of hub-api and dns."""
    upstream, dns = Upstream("hub-api"), Upstream("dns")
    for server in (upstream, dns):
        # A short poll: shutdown() waits for serve_forever's next look (0.5 s by default, per server and test).
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    port = free_port()
    vhost = render_hub(kit, certs)
    vhost = vhost.replace("server 127.0.0.1:3847;", f"server 127.0.0.1:{upstream.server_address[1]};")
    vhost = vhost.replace("server 127.0.0.1:3851;", f"server 127.0.0.1:{dns.server_address[1]};")
    vhost = re.sub(r"listen 80;\n\s*listen \[::\]:80;", f"listen 127.0.0.1:{free_port()};", vhost)
    vhost = re.sub(
        r"listen 443 ssl http2;\n\s*listen \[::\]:443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;", vhost
    )
    # Whole numbers only: a random free port may well contain "443" (44353 did, once).
    assert not re.search(r"\b(3847|3851|443)\b", vhost)
    conf = main_conf(tmp_path, vhost)
    proc = subprocess.Popen(
        [nginx_bin(), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield Served(f"https://127.0.0.1:{port}", upstream, dns, certs)
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.go.set()
        for server in (upstream, dns):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    ("path", "rate", "burst"), [("/api/v1/public/plans", 10, 20), ("/api/v1/tenant/heartbeat", 30, 50)]
)
def test_a_burst_beyond_the_limit_gets_429(served_hub, path, rate, burst):
    with served_hub.client() as client:
        started = time.monotonic()
        codes = [client.get(path).status_code for _ in range(burst + 40)]
        elapsed = time.monotonic() - started
    # One request at the rate plus `burst` at once (nodelay) pass, and whatever the rate refilled meanwhile.
    passed = codes.count(200)
    assert burst + 1 <= passed <= burst + 1 + math.ceil(elapsed * rate)
    assert codes[: burst + 1] == [200] * (burst + 1)
    assert codes.count(429) == len(codes) - passed > 0


@pytest.mark.parametrize(
    "path",
    ["/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics?format=text", "/%6Detrics"],
)
def test_metrics_and_api_docs_are_not_served_to_the_internet(served_hub, path):
    with served_hub.client() as client:
        r = client.get(path)
        assert r.status_code == 404 and r.text != "ok"
        assert client.get("/healthz").text == "ok"  # the rest still reaches hub-api


def test_every_proxied_request_carries_nginx_s_request_id(served_hub):
    with served_hub.client() as client:
        first = client.get("/api/v1/tenant/me", headers={"X-Request-ID": "forged-by-client"}).json()["request_id"]
        second = client.get("/api/v1/tenant/me").json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second) and first != second


def test_stripe_webhooks_are_not_held_to_the_public_limit(served_hub):
    with served_hub.client() as client:
        codes = [client.get("/api/v1/public/stripe/webhook").status_code for _ in range(60)]
    assert codes == [200] * 60


@pytest.mark.parametrize("api", ["admin", "customer"])
def test_sse_events_reach_the_client_while_the_stream_is_open(served_hub, api):
    hub = served_hub.client(timeout=5)
    with hub, hub.stream("GET", f"/api/v1/{api}/orders/4f1c/events") as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        # A buffering proxy would hold this back until the stream ends, which it does only after the go below.
        assert next(lines) == "data: step 1 started"
        served_hub.upstream.go.set()
        assert [line for line in lines if line] == ["data: step 1 done"]


@pytest.mark.parametrize(
    ("method", "path", "served_by"),
    [
        ("POST", "/api/v1/tenant/acme-challenge", "dns"),
        ("DELETE", "/api/v1/tenant/acme-challenge", "dns"),
        ("GET", "/api/v1/tenant/me", "hub-api"),
        ("POST", "/api/v1/tenant/heartbeat", "hub-api"),
        ("POST", "/api/v1/tenant/acme-challenge/other", "hub-api"),
    ],
)
def test_the_tenants_acme_route_reaches_the_dns_service_and_the_rest_of_the_tenant_api_hub_api(
    served_hub, method, path, served_by
):
    body = {"domain": "example.com", "validation": "gfj9Xq-Xvv9fZV5vC3jYSo6bVv0AjhQ7q4H2o4NYWLM"}
    with served_hub.client() as client:
        r = client.request(method, path, json=body, headers={"Authorization": "Bearer lbk_agent"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["served_by"], seen["method"], seen["path"]) == (served_by, method, path)
    assert json.loads(seen["body"]) == body  # the hook's body arrives whole


def test_the_hub_vhost_proxies_to_the_ports_compose_publishes_for_hub_api_and_dns(kit):
    """The stand-ins above are bound where the real services are: the upstreams match compose.yaml's ports,
    and the public URL tenants get (acme_url defaults to it) is this vhost."""
    tree = parse((kit.hub / "nginx" / "hub.conf").read_text())
    upstreams = {args[0]: directives(children, "server") for d, args, children in tree if d == "upstream"}
    services = yaml.safe_load((kit.hub / "compose.yaml").read_text())["services"]
    for upstream, service in (("letsbe_hub_api", "hub-api"), ("letsbe_dns", "dns")):
        [published] = services[service]["ports"]
        assert upstreams[upstream] == [[published.rsplit(":", 1)[0]]], service
    server = https_server(tree, "hub.letsbe.biz")
    assert directives(location(server, "=", "/api/v1/tenant/acme-challenge"), "proxy_pass") == [["http://letsbe_dns"]]
    env = (kit.hub / "env.example").read_text()
    assert "LETSBE_PUBLIC_URL=https://hub.letsbe.biz\n" in env
    provisioner = services["provisioner"]["environment"]
    assert provisioner["LETSBE_PROVISIONER_TENANT_HUB_URL"].startswith("${LETSBE_PUBLIC_URL")
    assert "LETSBE_PROVISIONER_ACME_URL" not in provisioner  # the default: the tenant hub URL, i.e. this vhost
    assert services["dns"]["environment"]["LETSBE_DNS_HUB_URL"] == "http://hub-api:3847"


# --- the tenant: the provisioner's rendering, as its nginx container sees it ---------------------------------


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True, check=False).stderr
    return tuple(int(x) for x in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


def tenant_nginx_here(rendered: Path, certs: Path, tmp_path: Path) -> Path:
    """The rendered tenant nginx with the container's mounts (from its rendered compose file) pointed at the
    rendered files, the tenant's TLS directory at the test certificate, and logs and pid under tmp_path."""
    work = tmp_path / "tenant-nginx"
    shutil.copytree(rendered / "opt" / "letsbe" / "nginx", work)
    service = yaml.safe_load((work / "docker-compose.yml").read_text())["services"]["nginx"]
    mounts: dict[str, Path] = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = work / source[2:]
        else:
            assert "tls" in source, f"unexpected host mount {volume}: teach this test where it points"
            mounts[target] = certs
    old_http2 = nginx_version() < (1, 25, 1)
    for conf in [work / "nginx.conf", *work.rglob("*.conf")]:
        text = conf.read_text()
        for target in sorted(mounts, key=len, reverse=True):
            text = text.replace(target, str(mounts[target]))
        text = re.sub(r"^user [^;]+;", "", text, flags=re.M)  # the image's user; -t runs as whoever we are
        text = re.sub(r"^pid [^;]+;", f"pid {tmp_path}/nginx.pid;", text, flags=re.M)
        text = text.replace("/var/log/nginx", str(tmp_path))
        if old_http2:
            # The tenant runs nginx >= 1.25.1 (its image); Debian 12's 1.22 only knows `listen ... http2`.
            text = re.sub(r"^\s*http2 on;\n", "", text, flags=re.M)
        conf.write_text(text)
    return work / "nginx.conf"


def test_rendered_tenant_nginx_passes_nginx_t(rendered_tenant, certs, tmp_path):
    conf = tenant_nginx_here(rendered_tenant, certs, tmp_path)
    checked = nginx_t(tmp_path, conf)
    assert checked.returncode == 0, checked.stderr
    # Every tool's vhost was part of what nginx checked.
    vhosts = [p for p in conf.parent.glob("conf.d/*.conf") if p.name != "00-default.conf"]
    assert len(vhosts) >= 10
    assert all("proxy_pass" in p.read_text() for p in vhosts)
