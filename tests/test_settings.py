"""Settings from a TOML config file, its [servers.NAME] tables, the environment and an --env-file: what a real
server does with them, their precedence as `fastcluster config --show` reports it, and bad ones."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys

import pytest

from tests.conftest import free_port, get


def cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith("FASTCLUSTER_") and key not in ("PORT", "WEB_CONCURRENCY")}
    return subprocess.run([sys.executable, "-m", "fastcluster", *args], capture_output=True, text=True,
                          timeout=30, env={**clean, **(env or {})}, cwd=cwd)


def shown(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """`config --show` output: key -> (value, source)."""
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        line = line[2:] if line.startswith("# ") else line  # a default
        if " = " in line:
            key, _, rest = line.partition(" = ")
            value, _, source = rest.partition(" # ")
            settings[key.strip()] = (value.strip(), source.strip())
    return settings


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def start_from_file(serve, config: str, port: int, *args: str, env: dict[str, str] | None = None):
    """Serve with a config file that sets the address itself (the harness adds no --port), until `port`
    answers."""
    server = serve("--config", config, *args, port=None, ready=False, env=env)
    server.port = port
    return server.wait_ready()


def test_a_config_file_runs_the_server_it_describes(serve, tmp_path):
    port = free_port()
    config = write(tmp_path / "fc.toml", f'bind = ["127.0.0.1:{port}"]\nresponse-body = "from the file"\n'
                                         'graceful_timeout = 5\n')
    start_from_file(serve, config, port)
    assert get(port) == (200, b"from the file")


def test_a_server_table_is_picked_by_name_over_the_shared_top_level(serve, tmp_path):
    api, admin = free_port(), free_port()
    config = write(tmp_path / "fc.toml", f"""
response-body = "shared"
[servers.api]
bind = ["127.0.0.1:{api}"]
[servers.admin]
bind = ["127.0.0.1:{admin}"]
response-body = "admin"
""")
    start_from_file(serve, config, api, "--server", "api")
    start_from_file(serve, config, admin, "--server", "admin")
    assert get(api) == (200, b"shared")
    assert get(admin) == (200, b"admin")


def test_the_app_table_names_the_app_and_its_settings(serve, tmp_path):
    (tmp_path / "mounted_site.py").write_text(
        "def make():\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [environ['SCRIPT_NAME'].encode()]\n"
        "    return app\n")
    port = free_port()
    config = write(tmp_path / "fc.toml", f'port = {port}\n[app]\napp = "mounted_site:make"\nfactory = true\n'
                                         f'app_dir = "{tmp_path}"\nroot-path = "/mounted"\n')
    start_from_file(serve, config, port)
    assert get(port, "/mounted/x") == (200, b"/mounted")


def test_flags_beat_environment_beats_file_beats_defaults(tmp_path):
    config = write(tmp_path / "fc.toml", 'workers = 3\nbacklog = 100\nport = 9001\nmax-body = "1m"\n'
                                         "graceful-timeout = 7\n")
    env = {"FASTCLUSTER_BACKLOG": "200", "FASTCLUSTER_MAX_BODY": "2m", "WEB_CONCURRENCY": "4",
           "FASTCLUSTER_WORKERS": "5", "PORT": "9002"}
    settings = shown(cli("config", "--show", "--config", config, "--max-body", "64k", env=env))
    assert settings["max-body"] == ("65536", "command line")
    assert settings["backlog"] == ("200", "FASTCLUSTER_BACKLOG")
    assert settings["workers"] == ('"5"', "FASTCLUSTER_WORKERS")  # above WEB_CONCURRENCY
    assert settings["port"] == ("9002", "PORT")  # above the file
    assert settings["graceful-timeout"] == ("7.0", config)
    assert settings["header-timeout"] == ("10.0", "default")
    platform = shown(cli("config", "--show", env={"WEB_CONCURRENCY": "4"}))
    assert platform["workers"] == ('"4"', "WEB_CONCURRENCY")


def test_show_prints_a_config_file_that_reads_back_the_same(tmp_path):
    first = cli("config", "--show", "--workers", "2", "--bind", "127.0.0.1:9005", "--no-server-header",
                "--access-log", "-", "wsgi_app:app", "--threads", "4")
    saved = write(tmp_path / "saved.toml", first.stdout)
    again = shown(cli("config", "--show", "--config", saved))
    assert {key: value for key, (value, _) in again.items()} == \
        {key: value for key, (value, _) in shown(first).items()}
    assert again["threads"] == ("4", saved) and again["no-server-header"] == ("true", saved)


def test_a_flag_list_replaces_the_file_list_and_the_environment_sets_every_flag(serve, tmp_path):
    from_file, from_flag = free_port(), free_port()
    config = write(tmp_path / "fc.toml", f'bind = ["127.0.0.1:{from_file}"]\n')
    start_from_file(serve, config, from_flag, "--bind", f"127.0.0.1:{from_flag}",
                    env={"FASTCLUSTER_RESPONSE_BODY": "from the environment",
                         "FASTCLUSTER_RESPONSE_HEADER": "'X-One: 1' 'X-Two: 2'"})
    assert get(from_flag) == (200, b"from the environment")
    with pytest.raises(ConnectionRefusedError):
        get(from_file)
    client = http.client.HTTPConnection("127.0.0.1", from_flag, timeout=5)
    client.request("GET", "/")
    response = client.getresponse()
    assert (response.getheader("X-One"), response.getheader("X-Two")) == ("1", "2")
    client.close()


def test_env_file_reaches_the_master_settings_and_the_app(serve, tmp_path):
    (tmp_path / "envapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return ['|'.join(os.environ.get(k, '-') for k in ('PLAIN', 'QUOTED', 'SINGLE', 'EXPORTED',"
        " 'KEPT')).encode()]\n")
    env_file = write(tmp_path / ".env", """
# a comment
PLAIN=one two  # trailing comment
QUOTED="a \\"quoted\\" # value"
SINGLE='$not expanded'
export EXPORTED=yes
KEPT=from the file
FASTCLUSTER_LOG_LEVEL=warning
""")
    server = serve("--env-file", env_file, "--app-dir", str(tmp_path), "envapp:app",
                   env={"KEPT": "from the environment"})
    assert get(server.port) == (200, b'one two|a "quoted" # value|$not expanded|yes|from the environment')
    assert "listening on" not in server.read_output()  # FASTCLUSTER_LOG_LEVEL=warning from the file


@pytest.mark.parametrize(("text", "env", "message"), [
    ("wokers = 3\n", {}, "fc.toml: unknown key 'wokers' (did you mean 'workers'?)"),
    ("graceful-timeout = -1\n", {}, "fc.toml: graceful-timeout: expected a positive number of seconds"),
    ("balance = 'fast'\n", {}, "fc.toml: balance: 'fast' is not one of reuseport, shared"),
    ("no-pin = 'maybe'\n", {}, "fc.toml: no-pin: expected true or false"),
    ("workers = [1, 2]\n", {}, "fc.toml: workers: expected a single value"),
    ("factory = true\n", {}, "fc.toml: factory: belongs in the [app] table"),
    ("[app]\nworkers = 2\n", {}, "fc.toml: app.workers: belongs at the top level"),
    ("timeout-keep-alive = 5\n", {}, "timeout-keep-alive: fastcluster's spelling is --keepalive-timeout"),
    ("config = 'other.toml'\n", {}, "fc.toml: unknown key 'config'"),
    ("workers = \n", {}, "is not valid TOML"),
    ("[servers.a]\n[servers.b]\n", {}, "defines servers a, b: choose one with --server NAME"),
    ("", {"FASTCLUSTER_PORT": "http"}, "FASTCLUSTER_PORT: port 'http' is not a number"),
    ("", {"PORT": "99999"}, "PORT: port '99999' is not a number"),
    ("", {"FASTCLUSTER_NO_PIN": "maybe"}, "FASTCLUSTER_NO_PIN: expected true or false"),
    ("", {"FASTCLUSTER_WORKERS": "many"}, "--workers: expected a positive number or 'auto', got 'many'"),
])
def test_bad_settings_give_one_line_naming_the_key_and_status_2(tmp_path, text, env, message):
    config = write(tmp_path / "fc.toml", text)
    for command in (["config", "--show"], ["serve"]):
        result = cli(*command, "--config", config, env=env)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("fastcluster: error: "), result
        assert message in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--server", "api"], "--server: names a [servers.NAME] table of a --config file"),
    (["--config", "/nonexistent.toml"], "--config: cannot read /nonexistent.toml"),
    (["--env-file", "/nonexistent.env"], "--env-file: cannot read /nonexistent.env"),
])
def test_missing_files_and_tables_give_one_line_and_status_2(args, message):
    result = cli("serve", *args)
    assert result.returncode == 2 and message in result.stderr, result
    assert result.stderr.count("\n") == 1


def test_a_bad_env_file_line_is_named(tmp_path):
    env_file = write(tmp_path / ".env", "GOOD=1\nthis is not an assignment\n")
    result = cli("config", "--show", "--env-file", env_file)
    assert result.returncode == 2
    assert f"--env-file: {env_file}:2: expected KEY=VALUE" in result.stderr


def test_the_environment_can_choose_the_file_and_its_server(tmp_path):
    config = write(tmp_path / "fc.toml", "[servers.api]\nbacklog = 64\n[servers.web]\nbacklog = 128\n")
    settings = shown(cli("config", "--show", env={"FASTCLUSTER_CONFIG": config, "FASTCLUSTER_SERVER": "web"}))
    assert settings["backlog"] == ("128", f"{config} [servers.web]")


@pytest.mark.parametrize(("text", "env", "value"), [
    ("ws-per-message-deflate = false\n", {}, "false"),
    ("no-ws-per-message-deflate = true\n", {}, "false"),
    ("no-ws-per-message-deflate = false\n", {}, "true"),
    ("", {"FASTCLUSTER_WS_PER_MESSAGE_DEFLATE": "0"}, "false"),
    ("", {"FASTCLUSTER_NO_WS_PER_MESSAGE_DEFLATE": "yes"}, "false"),
])
def test_an_on_off_flag_is_set_either_way_from_a_file_or_the_environment(tmp_path, text, env, value):
    config = write(tmp_path / "fc.toml", text + "[app]\nproxy-headers = false\n")
    settings = shown(cli("config", "--show", "--config", config, env=env))
    assert settings["ws-per-message-deflate"][0] == value
    assert settings["proxy-headers"] == ("false", config)


def test_per_message_deflate_is_on_by_default():
    assert shown(cli("config", "--show"))["ws-per-message-deflate"] == ("true", "default")


def test_a_server_without_per_message_deflate_from_its_file(serve, tmp_path):
    from tests.core.ws_client import read_head, upgrade_request

    port = free_port()
    config = write(tmp_path / "fc.toml", f"port = {port}\nws-per-message-deflate = false\n")
    server = start_from_file(serve, config, port)
    with server.connect() as sock:
        sock.sendall(upgrade_request(offer=b"permessage-deflate"))
        head, _ = read_head(sock)
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Extensions" not in head
