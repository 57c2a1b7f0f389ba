from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from firegate.config import (
    NOT_CONFIG_VARS,
    Settings,
    config_check,
    load_settings,
    parse_host_port,
    parse_size,
)
from firegate.errors import ConfigError, ConfigProblem, FiregateError
from tests.ops.keys import settings_keys

# (yaml text, key path that must be named). "{dir}" is the config file's directory.
BAD_CONFIGS = [
    ("gb26875: {listen: 'not-a-host-port'}", "gb26875.listen"),
    ("gb26875: {listen: '0.0.0.0:70000'}", "gb26875.listen"),
    ("gb26875: {listen: '0.0.0.0:0'}", "gb26875.listen"),
    ("gb26875: {listen: '::1:9001'}", "gb26875.listen"),
    ("gb26875: {listen: ':9001'}", "gb26875.listen"),
    ("gb26875: {listen: '[10.0.0.1]:9001'}", "gb26875.listen"),
    ("gb26875: {listen: 'bad host:9001'}", "gb26875.listen"),
    ("gb26875: {listen: 9001}", "gb26875.listen"),
    ("gb26875: {udp_listen: 'udp'}", "gb26875.udp_listen"),
    ("gb26875: {idle_timeout: 30}", "gb26875.idle_timeout"),
    ("gb26875: {patrol_interval: 7201}", "gb26875.patrol_interval"),
    ("gb26875: {patrol_interval: -1}", "gb26875.patrol_interval"),
    ("gb26875: {clock_sync_daily_at: '25:00'}", "gb26875.clock_sync_daily_at"),
    ("gb26875: {clock_sync_daily_at: 3}", "gb26875.clock_sync_daily_at"),
    ("gb26875: {address_mode: hex}", "gb26875.address_mode"),
    ("gb26875: {registry_policy: deny}", "gb26875.registry_policy"),
    ("gb26875: {max_connections: many}", "gb26875.max_connections"),
    ("gb26875: {center_address: 281474976710656}", "gb26875.center_address"),
    ("gb26875: {confirm_timeout: 0}", "gb26875.confirm_timeout"),
    ("gb26875: {write_buffer_limit: 64X}", "gb26875.write_buffer_limit"),
    ("gb26875: {listne: '0.0.0.0:9001'}", "gb26875.listne"),
    ("gb26875: [1, 2]", "gb26875"),
    ("bogus: 1", "bogus"),
    ("http: {listen: localhost}", "http.listen"),
    ("http: {listen: '0.0.0.0:9001'}", "http.listen"),  # the UITD port
    ("gb26875: {listen: '127.0.0.1:4223'}", "gb26875.listen"),  # the embedded server's port
    ("nats: {url: 'http://n1:4222'}", "nats.url"),
    ("nats: {url: 'nats://n1:4222,nats://n2'}", "nats.url"),
    ("nats: {url: 'nats://n1:4222,,nats://n2:4222'}", "nats.url"),
    ("nats: {user: fire}", "nats.user"),  # the key that was set, saying what is missing
    ("nats: {token: t, user: u, password: p}", "nats.token"),
    ("nats: {tls_cert: missing.pem}", "nats.tls_cert"),
    ("nats: {tls_key: cfg.yaml}", "nats.tls_key"),  # a key without its certificate
    ("nats: {embedded_max_mem: lots}", "nats.embedded_max_mem"),
    ("nats: {embedded_port: 0}", "nats.embedded_port"),
    ("nats: {connect_timeout: -1}", "nats.connect_timeout"),
    ("bus: {duplicate_window: 10}", "bus.duplicate_window"),
    ("bus: {replicas: 3}", "bus.replicas"),  # the embedded server is one node
    ("{nats: {url: 'nats://a:4222,nats://b:4222,nats://c:4222'}, bus: {replicas: 7}}", "bus.replicas"),
    ("bus: {max_bytes: 100G}", "bus.max_bytes"),  # above the embedded 64G store
    ("bus: {stream: fire.events}", "bus.stream"),
    ("bus: {spool_max_bytes: -1}", "bus.spool_max_bytes"),
    ("dispatch119: {url: 'ftp://119.example'}", "dispatch119.url"),
    ("dispatch119: {timeout: 0}", "dispatch119.timeout"),
    ("dispatch119: {timeout: 30, ack_wait: 30}", "dispatch119.timeout"),  # redelivered mid-POST
    ("dispatch119: {backoff_initial: 5, backoff_max: 1}", "dispatch119.backoff_max"),
    ("dispatch119: {url: 'https://a.example/in,'}", "dispatch119.url"),
    ("dispatch119: {tls_ca: cfg.yaml}", "dispatch119.tls_ca"),  # a file, but no certificate
    ("faults: {mqtt: [{url: 'http://broker:1883'}]}", "faults.mqtt.0.url"),
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', topic_prefix: '/'}]}", "faults.mqtt.0.topic_prefix"),
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', topic_prefix: 'a/#'}]}", "faults.mqtt.0.topic_prefix"),
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', tls_ca: cfg.yaml}]}", "faults.mqtt.0.tls_ca"),
    ("faults: {mqtt: [{url: 'mqtt://b:1883', kinds: [alarm]}]}", "faults.mqtt.0.kinds.0"),
    ("faults: {webhooks: [{url: 'https://hook.example', sites: ['a b']}]}", "faults.webhooks.0.sites.0"),
    (
        "faults: {webhooks: [{url: 'https://hook.example', system_types: [256]}]}",
        "faults.webhooks.0.system_types.0",
    ),
    ("alarms: {auto_confirm: {detectors: -1}}", "alarms.auto_confirm.detectors"),
    ("alarms: {auto_confirm: {escalate_after: 0}}", "alarms.auto_confirm.escalate_after"),
    ("alarms: {catch_up: 90000, retention: 3600}", "alarms.catch_up"),
    ("roles: [gateway, dispatcher]", "roles.1"),
    ("roles: []", "roles"),
    ("log: {level: verbose}", "log.level"),
    ("log: {format: xml}", "log.format"),
    ("data_dir: [a]", "data_dir"),
    ("sites: missing-sites.yaml", "sites"),
    ("gb26875:\n  listen: '0.0.0.0:9001'\n  listen: '0.0.0.0:9002'\n", "gb26875.listen"),  # duplicate
    ("- just\n- a list\n", "cfg.yaml"),
    ("gb26875:\n  listen: [\n", "cfg.yaml"),  # YAML syntax error
    # a rule across keys is reported on the key that was set, not on the one left at its default
    ("gb26875: {listen: '0.0.0.0:9108'}", "gb26875.listen"),  # http.listen's default port
    ("nats: {embedded_port: 9001}", "nats.embedded_port"),  # gb26875.listen's default port
    ("nats: {password: p}", "nats.password"),
    ("nats: {embedded_max_file: 1G}", "nats.embedded_max_file"),  # below the default bus.max_bytes
    ("dispatch119: {ack_wait: 3}", "dispatch119.ack_wait"),  # below the default timeout
    ("dispatch119: {backoff_initial: 60}", "dispatch119.backoff_initial"),  # above the default max
    ("faults: {webhooks: [{url: 'https://hook.example', ack_wait: 2}]}", "faults.webhooks.0.ack_wait"),
    ("alarms: {retention: 60}", "alarms.retention"),  # below the default catch_up
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', topic_prefix: 'a b'}]}", "faults.mqtt.0.topic_prefix"),
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', topic_prefix: ''}]}", "faults.mqtt.0.topic_prefix"),
    ("faults: {mqtt: [{url: 'mqtt://broker:1883', topic_prefx: a}]}", "faults.mqtt.0.topic_prefx"),
]

# (environment, yaml text, key path that must be named, where it must say the value comes from).
# A FIREGATE_* variable that names no setting is itself the key.
BAD_ENVIRONMENTS = [
    ({"FIREGATE_NATS_URL": "nats://n1:4222"}, "", "FIREGATE_NATS_URL", None),  # one underscore
    ({"FIREGATE_FOO": "1"}, "", "FIREGATE_FOO", None),
    ({"firegate_log_level": "debug"}, "", "firegate_log_level", None),  # any case
    ({"FIREGATE_": "1"}, "", "FIREGATE_", None),
    ({"FIREGATE_DATA_DIR__X": "1"}, "", "FIREGATE_DATA_DIR__X", None),  # below a key that has none
    ({"FIREGATE_FAULTS__MQTT__0__URL": "mqtt://b:1883"}, "", "FIREGATE_FAULTS__MQTT__0__URL", None),
    ({"FIREGATE_NATS__URL": "nats://n1"}, "", "nats.url", "env FIREGATE_NATS__URL"),
    ({"FIREGATE_NATS__PASSWORD": "x"}, "", "nats.password", "env FIREGATE_NATS__PASSWORD"),
    ({"FIREGATE_NATS__USER": "u"}, "nats: {token: t}\n", "nats.token", "cfg.yaml:1"),
    ({"FIREGATE_HTTP__LISTEN": "0.0.0.0:9001"}, "", "http.listen", "env FIREGATE_HTTP__LISTEN"),
    ({"FIREGATE_FAULTS__MQTT": "[{"}, "", "faults.mqtt", "env FIREGATE_FAULTS__MQTT"),
    ({"FIREGATE_FAULTS__MQTT": ""}, "", "faults.mqtt", "env FIREGATE_FAULTS__MQTT"),
    ({"FIREGATE_ROLES": "gateway"}, "", "roles", "env FIREGATE_ROLES"),  # a list is JSON
    ({"FIREGATE_ALARMS__AUTO_CONFIRM": "{"}, "", "alarms.auto_confirm", "env FIREGATE_ALARMS__AUTO_CONFIRM"),
    (
        {"FIREGATE_FAULTS__MQTT": '[{"url": "mqtt://b:1883", "bogus": 1}]'},
        "",
        "faults.mqtt.0.bogus",
        "env FIREGATE_FAULTS__MQTT",
    ),
    (
        {"FIREGATE_FAULTS__WEBHOOKS": '[{"url": "https://h.example", "timeout": 40}]'},
        "faults: {webhooks: [{url: 'https://other.example'}]}\n",
        "faults.webhooks.0.timeout",
        "env FIREGATE_FAULTS__WEBHOOKS",
    ),
    ({"FIREGATE_NATS": '{"url": "http://n1:4222"}'}, "", "nats.url", "env FIREGATE_NATS"),
    ({"FIREGATE_NATS": '{"url": "nats://n1:4222"}'}, "nats: {user: u}\n", "nats.user", "cfg.yaml:1"),
]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS)
def test_bad_config_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    keys = [p.key.removeprefix(str(tmp_path) + "/") for p in info.value.problems]
    assert key in keys, str(info.value)
    assert config_check(path) == 1
    out, err = capsys.readouterr()
    assert key.removeprefix("cfg.yaml") in err
    assert "Traceback" not in err + out
    assert out == ""


@pytest.mark.parametrize(("env", "text", "key", "where"), BAD_ENVIRONMENTS)
def test_bad_environment_names_the_key_and_the_variable(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    text: str,
    key: str,
    where: str | None,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    found = {p.key: p.where for p in info.value.problems}
    assert key in found, str(info.value)
    if where is not None:
        assert found[key] == where.replace("cfg.yaml", str(path))
    assert config_check(path) == 1
    out, err = capsys.readouterr()
    assert key in err and "Traceback" not in err + out
    assert out == ""


# (yaml text, every key reported, in order): one run reports every problem, a rule across keys
# included whenever its keys validated, and no rule that only echoes a key that failed
EVERY_PROBLEM_IN_ONE_RUN = [
    (
        "dispatch119:\n  timeout: 40\n"
        "bus:\n  replicas: 3\n  max_bytes: 100T\n"
        "http:\n  listen: 0.0.0.0:9001\n",
        ["dispatch119.timeout", "bus.replicas", "bus.max_bytes", "http.listen"],
    ),
    ("bus: {max_bytes: lots, replicas: 3}\n", ["bus.max_bytes", "bus.replicas"]),
    ("log: {level: loud}\nalarms: {catch_up: 90000, retention: 3600}\n", ["log.level", "alarms.catch_up"]),
    ("nats: {connect_timeout: -1}\nbus: {replicas: 3}\n", ["nats.connect_timeout", "bus.replicas"]),
    ("nats: {tls_cert: missing.pem, user: u}\n", ["nats.tls_cert", "nats.user"]),
    (
        "faults: {mqtt: [{url: 'http://b:1883', timeout: 40}, {url: 'mqtt://b:1883', ack_wait: 2}]}\n",
        ["faults.mqtt.0.url", "faults.mqtt.0.timeout", "faults.mqtt.1.ack_wait"],
    ),
    (
        "gb26875:\n  listen: '0.0.0.0:9001'\n  listen: x\nlog: {level: loud}\n",
        ["gb26875.listen"] * 2 + ["log.level"],
    ),
    # a nats.url that failed is still not the embedded server: no replicas or port rule for it
    (
        "nats: {url: 'http://n1:4222'}\nbus: {replicas: 3}\ngb26875: {listen: '127.0.0.1:4223'}\n",
        ["nats.url"],
    ),
    ("dispatch119: {timeout: abc, ack_wait: 3}\n", ["dispatch119.timeout"]),
    ("dispatch119: {backoff_max: 0}\n", ["dispatch119.backoff_max"]),
    ("nats: {tls_cert: missing.pem, tls_key: cfg.yaml}\n", ["nats.tls_cert"]),
    ("nats: {user: [u], password: p}\n", ["nats.user"]),
    ("gb26875: [1]\nhttp: {listen: '0.0.0.0:9001'}\n", ["gb26875"]),
    ("nats: [1]\nbus: {replicas: 3}\n", ["nats"]),
    (
        "faults: {mqtt: [{url: 'http://b:1883', tls_ca: missing.pem}]}\n",
        ["faults.mqtt.0.tls_ca", "faults.mqtt.0.url"],
    ),
    (
        "bus: {max_bytes: 100T, replicas: 9}\nnats: {embedded_max_file: lots}\n",
        ["bus.replicas", "nats.embedded_max_file"],
    ),
]


@pytest.mark.parametrize(("text", "keys"), EVERY_PROBLEM_IN_ONE_RUN)
def test_every_problem_in_one_run(tmp_path: Path, text: str, keys: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert [p.key for p in info.value.problems] == keys, str(info.value)


def test_environment_problems_come_with_the_file_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREGATE_NATS_URL", "nats://n1:4222")
    monkeypatch.setenv("FIREGATE_BUS__DUPLICATE_WINDOW", "5")
    for text in ("log: {level: loud}\n", "gb26875:\n  listen: [\n"):
        path = write(tmp_path, text)
        assert config_check(path) == 1
        err = capsys.readouterr().err
        assert "FIREGATE_NATS_URL" in err and ("log.level" in err or "YAML syntax error" in err)
        if "log.level" in err:
            assert "env FIREGATE_BUS__DUPLICATE_WINDOW" in err


def test_messages_name_the_key_that_was_set_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "gb26875:\n  listen: 0.0.0.0:9108\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        "gb26875.listen: TCP port 9108 is already used by http.listen (default 0.0.0.0:9108): "
        f"give one of them another (got '0.0.0.0:9108') [{path}:2]"
    )

    monkeypatch.setenv("FIREGATE_NATS__PASSWORD", "s3cret")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert str(info.value) == (
        "nats.password: user and password go together: set user too, or neither [env FIREGATE_NATS__PASSWORD]"
    )


def test_env_json_problems_name_the_key_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_FAULTS__MQTT", '[{"url": "mqtt://b:1883", "password": "s3cret"')
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    [problem] = info.value.problems
    assert (problem.key, problem.where) == ("faults.mqtt", "env FIREGATE_FAULTS__MQTT")
    assert "JSON" in problem.reason and "s3cret" not in str(problem)

    monkeypatch.setenv("FIREGATE_FAULTS__MQTT", '[{"url": "mqtt://b:1883", "topic_prefx": "a"}]')
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert str(info.value) == (
        "faults.mqtt.0.topic_prefx: unknown key (did you mean 'topic_prefix'?) [env FIREGATE_FAULTS__MQTT]"
    )


@pytest.mark.parametrize(
    ("prefix", "words"),
    [("a/#", "'#'"), ("fire+", "'+'"), ("fire alarms", "whitespace"), ("a\x00b", "NUL"), ("//", "only '/'")],
)
def test_topic_prefix_problems_in_words(tmp_path: Path, prefix: str, words: str) -> None:
    path = write(
        tmp_path, f"faults: {{mqtt: [{{url: 'mqtt://b:1883', topic_prefix: {json.dumps(prefix)}}}]}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    [problem] = info.value.problems
    assert problem.key == "faults.mqtt.0.topic_prefix"
    assert words in problem.reason and "pattern" not in problem.reason and "^" not in problem.reason


@pytest.mark.parametrize(
    "name",
    [
        "FIREGATE_SERVICE_HOST",  # Kubernetes, for a Service named firegate
        "FIREGATE_SERVICE_PORT",
        "FIREGATE_SERVICE_PORT_UITD",
        "FIREGATE_PORT",
        "FIREGATE_PORT_9001_TCP",
        "FIREGATE_PORT_9001_TCP_ADDR",
        "FIREGATE_NAME",  # Docker links
        "FIREGATE_ENV_TZ",
    ],
)
def test_a_container_platforms_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "tcp://10.0.0.5:9001")
    assert load_settings(None).gb26875.listen == "0.0.0.0:9001"


EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "firegate.example.yaml"

# (variable set over the example file, the key the rule must be reported on)
OVER_THE_EXAMPLE = [
    ("FIREGATE_DISPATCH119__ACK_WAIT", "3", "dispatch119.ack_wait"),
    ("FIREGATE_NATS__EMBEDDED_MAX_FILE", "1G", "nats.embedded_max_file"),
    ("FIREGATE_ALARMS__RETENTION", "60", "alarms.retention"),
    ("FIREGATE_NATS__EMBEDDED_PORT", "9001", "nats.embedded_port"),
]


@pytest.mark.parametrize(("variable", "value", "key"), OVER_THE_EXAMPLE)
def test_a_rule_broken_from_the_environment_names_that_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    # the example file sets both keys of each rule; the operator changed one of them
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(str(EXAMPLE))
    [problem] = info.value.problems
    assert (problem.key, problem.where) == (key, f"env {variable}")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("FIREGATE_NATS_URL", "FIREGATE_NATS__URL"),
        ("FIREGATE_GB26875_LISTEN", "FIREGATE_GB26875__LISTEN"),
        ("FIREGATE_ALARMS_AUTO_CONFIRM_DETECTORS", "FIREGATE_ALARMS__AUTO_CONFIRM__DETECTORS"),
        ("FIREGATE_DATA__DIR", "FIREGATE_DATA_DIR"),
        ("FIREGATE_LOG__LEVLE", None),  # an unknown key in a section: validation suggests "level"
        ("FIREGATE_DISPATCH_119__URL", "FIREGATE_DISPATCH119__URL"),
        ("FIREGATE_FOO", None),
    ],
)
def test_unknown_variable_suggests_the_right_one(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str | None
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    [problem] = info.value.problems
    if suggestion is None:
        assert "did you mean FIREGATE" not in problem.reason
    else:
        assert problem.key == name
        assert f"did you mean {suggestion}?" in problem.reason


def test_variables_that_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_OPERATOR", "duty-officer")  # `firegate alarm --operator`'s default
    assert load_settings(None) == Settings()


def test_firegate_reads_no_other_variables() -> None:
    """Every FIREGATE_* name in firegate's code is a setting or a known exception: any other
    would be reported as an unknown variable."""
    root = Path(__file__).resolve().parents[2]
    files = [p for p in (root / "firegate").rglob("*.py") if p.name != "config.py"]
    names = set()
    for path in [*files, root / "Dockerfile", *(root / "config").glob("*.yaml")]:
        names |= set(re.findall(r"\b(FIREGATE_[A-Z0-9_]*[A-Z0-9])\b(?!\{)", path.read_text(encoding="utf-8")))
    valid = {"FIREGATE_" + key.upper().replace(".", "__") for key in settings_keys()}
    valid |= {"FIREGATE_" + key.split(".")[0].upper() for key in settings_keys()}
    assert names - valid <= NOT_CONFIG_VARS, names - valid


def test_error_format_and_hierarchy(tmp_path: Path) -> None:
    path = write(tmp_path, "gb26875:\n  listen: 'not-a-host-port'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"gb26875.listen: expected host:port, e.g. 0.0.0.0:9001 (got 'not-a-host-port') [{path}:2]"
    )
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, FiregateError)
    assert str(ConfigProblem("nats.url", "file not found")) == "nats.url: file not found"


def test_every_problem_reported_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: loud\ngb26875:\n  listen: x\n  retries: 99\nbogus: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert [p.key for p in info.value.problems] == ["log.level", "gb26875.listen", "gb26875.retries", "bogus"]
    assert [p.where for p in info.value.problems] == [f"{path}:{n}" for n in (2, 4, 5, 6)]


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gb26875\.listne: unknown key \(did you mean 'listen'\?\)"):
        load_settings(write(tmp_path, "gb26875: {listne: '0.0.0.0:9001'}"))


def test_yaml_syntax_error_has_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "gb26875:\n  listen: '0.0.0.0:9001'\n   bad: [\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line 3"):
        load_settings(path)


def test_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, reason in [
        (tmp_path / "nope.yaml", "file not found"),
        (tmp_path, "is a directory"),
        (write(tmp_path, "", "bin.yaml"), None),
    ]:
        if reason is None:
            path.write_bytes(b"\xff\xfe\x00bad")
            reason = "not UTF-8"
        assert config_check(path) == 1
        err = capsys.readouterr().err
        assert reason in err and str(path) in err and "Traceback" not in err


def test_secrets_are_never_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nats: {url: 'nats://fire:s3cret@n1', password: 123456, token: [987654]}\n"
        "dispatch119: {token: {x: 555555}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert "nats.password" in text and "nats.token" in text and "dispatch119.token" in text
    for secret in ("s3cret", "123456", "987654", "555555"):
        assert secret not in text


def test_defaults_without_a_file() -> None:
    s = load_settings(None)
    assert s.nats.embedded and s.nats.urls == ["nats://127.0.0.1:4223"]
    assert s.effective_replicas == 1
    assert s.gb26875.listen == "0.0.0.0:9001" and s.http.listen == "0.0.0.0:9108"
    assert s.bus.stream == "FIRE" and s.bus.duplicate_window == 120
    assert s.bus.max_bytes == 50 * 10**9 and s.bus.spool_max_bytes == 10**9
    assert s.gb26875.idle_timeout == 100 and s.gb26875.patrol_interval == 3600
    assert s.gb26875.write_buffer_limit == 65536
    assert s.dispatch119.url is None and s.sites is None
    assert s.data_dir == Path("firegate-data")
    assert s.log.level == "INFO" and s.log.format == "json"
    assert load_settings(None) == Settings()


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "# nothing\n")) == load_settings(None)


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "gb26875: {listen: '0.0.0.0:9001', retries: 5}\nlog: {level: info}\n")
    monkeypatch.setenv("FIREGATE_GB26875__LISTEN", "127.0.0.1:9555")
    monkeypatch.setenv("firegate_log__level", "debug")  # names are case-insensitive
    monkeypatch.setenv("FIREGATE_DATA_DIR", "/var/lib/firegate")
    s = load_settings(path)
    assert s.gb26875.listen == "127.0.0.1:9555"
    assert s.gb26875.retries == 5  # the file still counts for keys the env leaves alone
    assert s.log.level == "DEBUG"
    assert s.data_dir == Path("/var/lib/firegate")


def test_env_error_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_BUS__DUPLICATE_WINDOW", "5")
    monkeypatch.setenv("FIREGATE_GB26875__LISTNE", "x")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "bus: {duplicate_window: 60}\n"))
    where = {p.key: p.where for p in info.value.problems}
    assert where == {
        "bus.duplicate_window": "env FIREGATE_BUS__DUPLICATE_WINDOW",
        "gb26875.listne": "env FIREGATE_GB26875__LISTNE",
    }


def test_empty_env_unsets_an_optional_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_NATS__URL", "")
    s = load_settings(write(tmp_path, "nats: {url: 'nats://n1:4222'}\n"))
    assert s.nats.embedded


@pytest.mark.parametrize(
    ("url", "replicas"),
    [
        ("nats://n1:4222", 1),
        ("nats://n1:4222,nats://n2:4222,nats://n3:4222", 3),
        (" nats://n1:4222 , tls://n2:4443 ", 3),
        ("wss://n1:443,ws://n2:8080", 3),
    ],
)
def test_url_list_sets_replicas(tmp_path: Path, url: str, replicas: int) -> None:
    s = load_settings(write(tmp_path, f"nats: {{url: '{url}'}}\n"))
    assert s.effective_replicas == replicas
    assert s.nats.urls == [u.strip() for u in url.split(",")]


def test_url_list_from_env_sets_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_NATS__URL", "nats://n1:4222,nats://n2:4222,nats://n3:4222")
    assert load_settings(None).effective_replicas == 3
    monkeypatch.setenv("FIREGATE_BUS__REPLICAS", "1")
    assert load_settings(None).effective_replicas == 1  # an explicit value wins


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", "sites: {}\n", "sites.yaml")
    s = load_settings(write(tmp_path / "etc", "data_dir: data\nsites: sites.yaml\n"))
    assert s.data_dir == tmp_path / "etc" / "data"
    assert s.sites == tmp_path / "etc" / "sites.yaml"


def test_yaml_11_pitfalls(tmp_path: Path) -> None:
    # unquoted 12:30 is the number 750 in YAML 1.1; firegate reads it as a time
    s = load_settings(write(tmp_path, "gb26875: {clock_sync_daily_at: 12:30, write_buffer_limit: 1MiB}\n"))
    assert s.gb26875.clock_sync_daily_at == time(12, 30)
    assert s.gb26875.write_buffer_limit == 1 << 20


def test_config_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_check(write(tmp_path, "gb26875: {listen: '[::]:9001'}\n")) == 0
    assert capsys.readouterr().out == "ok\n"


def test_config_check_includes_the_site_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "sites: {A: {unit: x, lat: 91, lon: 0}}\n", "sites.yaml")
    assert config_check(write(tmp_path, "sites: sites.yaml\n")) == 1
    assert "sites.A.lat" in capsys.readouterr().err


def test_config_check_in_a_fresh_process(tmp_path: Path) -> None:
    path = write(tmp_path, "gb26875:\n  listen: 'not-a-host-port'\n")
    code = "import sys; from firegate.config import config_check; sys.exit(config_check(sys.argv[1]))"
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=root)
    assert p.returncode == 1
    assert "gb26875.listen" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9001", ("0.0.0.0", 9001)),
        ("localhost:1", ("localhost", 1)),
        ("[::]:65535", ("::", 65535)),
        ("[fe80::1]:9108", ("fe80::1", 9108)),
        ("gw-1.fire.local:9001", ("gw-1.fire.local", 9001)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text", ["9001", "host:", "host:x", "::1:9001", "[::1]9001", "[::1:9001", "999.1.1.1:80", ":80", "a b:1"]
)
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50G", 50 * 10**9),
        ("1g", 10**9),
        ("64KiB", 65536),
        ("64KB", 65536),
        ("512M", 512 * 10**6),
        ("1.5G", 1_500_000_000),
        ("2Ti", 2 * 1024**4),
        ("4096", 4096),
        ("10 MiB", 10 * 1024**2),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "1Q", "-1G", "1.2.3G", "lots"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_env_section_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_NATS", '{"url": "nats://n1:4222"}')
    assert load_settings(None).nats.urls == ["nats://n1:4222"]
    monkeypatch.setenv("FIREGATE_NATS", "{not json")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert [(p.key, p.where) for p in info.value.problems] == [("nats", "env FIREGATE_NATS")]


def test_a_misspelled_secret_key_is_named_and_its_value_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "nats:\n  user: gateway\n  pasword: SECRETtypo55\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "nats.pasword: unknown key (did you mean 'password'?)" in str(info.value)
    assert "SECRETtypo55" not in str(info.value)
    assert config_check(path) == 1
    out, err = capsys.readouterr()
    assert "nats.pasword" in err and "SECRETtypo55" not in out + err


@pytest.mark.parametrize(("content", "reason"), [(None, "file not found"), ("", "the file is empty")])
def test_a_password_file_missing_or_empty_is_named_alone(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    """Its own problem only: not also "user and password go together" (the user gave both)."""
    if content is not None:
        (tmp_path / "pw").write_text(content)
    path = write(tmp_path, "nats:\n  url: nats://127.0.0.1:4299\n  user: seat-1\n  password_file: pw\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert [(p.key, p.reason) for p in info.value.problems] == [("nats.password_file", reason)]
