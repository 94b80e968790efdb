"""Where `serve` settings come from besides flags: a TOML config file (--config, optionally one of its
[servers.NAME] tables), the environment (FASTCLUSTER_<FLAG>, then PORT and WEB_CONCURRENCY as platforms set
them) and an --env-file. They become the serve parser's defaults before it parses the command line, so the
precedence is flags > environment > file > defaults and every source goes through the same flag types and
checks. The keys are the parser's own long flags, so a new flag is a key and an environment variable too."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import sys

from fastcluster.config import ConfigError
from fastcluster.habits import ALIASES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - tomli is a dependency on 3.9 and 3.10
    import tomli as tomllib

ENV_PREFIX = "FASTCLUSTER_"
#: Platform variables (Heroku, Cloud Run, Render...): below FASTCLUSTER_*, above the file.
PLATFORM_ENV = {"PORT": "port", "WEB_CONCURRENCY": "workers"}
#: The group of serve flags that sit in a config file's [app] table (with `app`, the APP argument).
APP_GROUP = "apps"
#: Keys that choose where settings come from: flags and environment only, never inside a file.
OUTSIDE_FILE = ("config", "server")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


class FromSettings(list):
    """A list setting (--bind, --response-header) that came from the file or environment: the first
    occurrence of the flag on the command line replaces it instead of adding to it."""


class ReplacingAppend(argparse._AppendAction):
    """argparse's append, except that a command-line value replaces a list from the file or environment."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if isinstance(getattr(namespace, self.dest, None), FromSettings):
            setattr(namespace, self.dest, [])
        super().__call__(parser, namespace, values, option_string)


def setting_keys(serve: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every serve setting by its key: the long flag without dashes ("APP" is `app`); habit aliases and
    help are not keys."""
    keys: dict[str, argparse.Action] = {}
    for action in serve._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            keys[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--") and option not in ALIASES:
                keys[option[2:]] = action
    return keys


def app_keys(serve: argparse.ArgumentParser) -> set[str]:
    """The keys of the [app] table: APP and the flags of the "apps" group."""
    group = next(group for group in serve._action_groups if group.title == APP_GROUP)
    return {"app"} | {option[2:] for action in group._group_actions for option in action.option_strings
                      if option.startswith("--") and option not in ALIASES}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


def apply(serve: argparse.ArgumentParser, argv: list[str]) -> dict[str, str]:
    """Set the serve parser's defaults from the config file and the environment (loading --env-file into
    os.environ first); return where each setting so set came from, by dest."""
    keys = setting_keys(serve)
    given = given_on_command_line(serve, argv)
    config = given.get("config") or os.environ.get(env_name("config"))
    server = given.get("server") or os.environ.get(env_name("server"))
    from_file = read_config(config, server, serve) if config else {}
    if server and not config:
        raise ConfigError("--server: names a [servers.NAME] table of a --config file, and none is given")
    env_file = given.get("env_file") or os.environ.get(env_name("env-file"))
    if env_file is None and "env-file" in from_file:
        env_file = str(from_file["env-file"][0])
    if env_file:
        load_env_file(env_file)
    chosen = {key: (value, origin, False) for key, (value, origin) in from_file.items()}
    for variable, key in PLATFORM_ENV.items():
        if os.environ.get(variable):
            chosen[key] = (os.environ[variable], variable, True)
    for key in keys:
        name = env_name(key)
        if name in os.environ and key not in OUTSIDE_FILE:
            chosen[key] = (os.environ[name], name, True)
    defaults: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key, (value, origin, from_env) in chosen.items():
        action = keys[key]
        converted = convert(action, value, origin, key, from_env)
        if converted is not SKIP:
            defaults[action.dest] = converted
            sources[action.dest] = origin
    serve.set_defaults(**defaults)
    return sources


def given_on_command_line(serve: argparse.ArgumentParser, argv: list[str]) -> dict[str, object]:
    """The dests the command line sets, with their values (parsed with every default suppressed)."""
    saved = [(action, action.default) for action in serve._actions]
    saved_defaults = dict(serve._defaults)
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        serve._defaults.clear()
        namespace, _ = serve.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
        serve._defaults.update(saved_defaults)
    return vars(namespace)


SKIP = object()  # a false no-value flag (`no-server-header = false`): leaves the default alone


def convert(action: argparse.Action, value: object, origin: str, key: str, from_env: bool) -> object:
    """A file or environment value, checked and converted as the flag's own value would be."""
    where = origin if from_env else f"{origin}: {key}"
    if action.nargs == 0:  # a flag without a value: store_true, store_const, --x/--no-x
        flag = value if isinstance(value, bool) else str(value).strip().lower()
        if flag not in (True, False, *TRUE, *FALSE):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        on = flag is True or flag in TRUE
        if isinstance(action, argparse.BooleanOptionalAction):
            return on != key.startswith("no-")  # `no-x = true` is x = false
        if action.const is True:
            return on
        return action.const if on else SKIP
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, list):
            items = value
        else:
            items = shlex.split(value) if from_env and isinstance(value, str) else [value]
        return FromSettings(convert_one(action, item, where) for item in items)
    return convert_one(action, value, where)


def convert_one(action: argparse.Action, value: object, where: str) -> object:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a single value like the flag takes, got {value!r}")
    if isinstance(value, int) and getattr(action.type, "octal", False):
        raise ConfigError(f'{where}: write the octal mode as a string, like "0660"')
    text = str(value)
    try:
        result = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        message = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else f"invalid value {text!r}"
        raise ConfigError(f"{where}: {message}") from None
    if action.choices and result not in action.choices:
        raise ConfigError(f"{where}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def read_config(path: str, server: str | None,
                serve: argparse.ArgumentParser) -> dict[str, tuple[object, str]]:
    """The settings of a config file, or of its [servers.NAME] table over the file's top level."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    servers = data.pop("servers", {})
    if not isinstance(servers, dict) or not all(isinstance(table, dict) for table in servers.values()):
        raise ConfigError(f"{path}: servers: expected [servers.NAME] tables")
    settings = table_settings(data, path, serve)
    if server is None:
        if servers:
            raise ConfigError(f"{path} defines servers {', '.join(servers)}: choose one with --server NAME")
        return settings
    if server not in servers:
        known = ", ".join(servers) or "none"
        raise ConfigError(f"--server: {path} has no [servers.{server}] table (it has: {known})")
    return {**settings, **table_settings(servers[server], f"{path} [servers.{server}]", serve)}


def table_settings(table: dict, origin: str, serve: argparse.ArgumentParser) -> dict[str, tuple[object, str]]:
    keys = set(setting_keys(serve)) - set(OUTSIDE_FILE)
    in_app = app_keys(serve)
    app = table.pop("app", {})
    if not isinstance(app, dict):
        raise ConfigError(f"{origin}: app: expected an [app] table (with app = \"module:attribute\")")
    settings = {}
    for section, entries, allowed in (("", table, keys - in_app), ("app.", app, in_app)):
        for raw, value in entries.items():
            key = raw.replace("_", "-")
            if key not in allowed:
                raise ConfigError(f"{origin}: {unknown_key(section + raw, key, keys, in_app)}")
            settings[key] = (value, origin)
    return settings


def unknown_key(name: str, key: str, keys: set[str], in_app: set[str]) -> str:
    if f"--{key}" in ALIASES:
        return f"{name}: {ALIASES[f'--{key}'].advice()}"
    if key in in_app:
        return f"{name}: belongs in the [app] table"
    if key in keys:
        return f"{name}: belongs at the top level, not in [app]"
    close = difflib.get_close_matches(key, sorted(keys), n=1)
    return f"unknown key {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def load_env_file(path: str) -> None:
    """Load a dotenv file into os.environ (what is already set wins, as with python-dotenv): the master
    has it before the app is imported, and the workers inherit it."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"--env-file: cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        name, value = parse_env_line(line, f"--env-file: {path}:{number}")
        if name and name not in os.environ:
            os.environ[name] = value


def parse_env_line(line: str, where: str) -> tuple[str, str]:
    """KEY=VALUE, `export KEY=VALUE`, quoted values, # comments; ("", "") for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return "", ""
    if text.startswith("export "):
        text = text[7:].lstrip()
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise ConfigError(f"{where}: expected KEY=VALUE, got {line!r}")
    value = value.strip()
    if value[:1] == "'":  # taken as written
        end = value.find("'", 1)
        if end < 0:
            raise ConfigError(f"{where}: unterminated ' quote")
        return name, value[1:end]
    if value[:1] == '"':  # backslash escapes: \" \\ \n
        inner, escaped = [], False
        for char in value[1:]:
            if escaped:
                inner.append({"n": "\n", "t": "\t"}.get(char, char))
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                return name, "".join(inner)
            else:
                inner.append(char)
        raise ConfigError(f'{where}: unterminated " quote')
    return name, value.split(" #", 1)[0].rstrip()


def render(serve: argparse.ArgumentParser, args: argparse.Namespace, sources: dict[str, str],
           given: set[str]) -> str:
    """Every effective serve setting as a TOML config file, each with where it came from (defaults
    commented out)."""
    in_app = app_keys(serve)
    lines: list[str] = []
    app_lines: list[str] = ["", "[app]"]
    for key, action in setting_keys(serve).items():
        if key in OUTSIDE_FILE or f"--{key}" != (action.option_strings or ["--" + key])[0]:
            continue
        value = getattr(args, action.dest)
        if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
            value = value == action.const
        source = ("command line" if action.dest in given else sources.get(action.dest, "default"))
        if getattr(action.type, "octal", False) and value is not None:
            value = f"{value:04o}"
        text = f"# {key} is not set" if value is None else f"{key} = {toml_value(value)}"
        if source == "default" and value is not None:
            text = "# " + text  # so the output read back as a config file sets only what was chosen
        (app_lines if key in in_app else lines).append(f"{text:<44} # {source}")
    return "\n".join(lines + app_lines)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))
