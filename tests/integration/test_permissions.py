"""Least privilege on the bus, against nats-servers started from the shipped config/nats/.

Every role's user does its job and is refused outside it (the server says so: a permission
violation); a fire alarm forged by the 119 user never reaches stream FIRE; the 3-node cluster
files start and hold an R3 stream; firegate split into its roles, the CLI as an operator seat and
a 119 subscriber take a fire from a device to 119, the decision recording the seat the server
attests; a role run with the wrong user says which user, which subject, which setting, and keeps
running; no secret appears in any log or in `config check`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.server import find_nats_server
from firegate.tools.fake119 import FakeDispatch119
from tests.integration.natsdeploy import (
    CONFIG_DIR,
    PASSWORDS,
    Client,
    NatsProcess,
    client,
    copy_shared,
    inbox_prefix,
    leaked,
    server_env,
    shipped_cluster,
    shipped_single,
)
from tests.integration.process import FIREGATE, Firegate, clean_env
from tests.natsserver import wait_until
from tests.ports import free_ports

FORGED = b'{"type": "fire_alarm", "id": "forged"}'


async def _stream_messages(monitor: Client, stream: str = "FIRE") -> int:
    info = await monitor.nc.jetstream().stream_info(stream)
    return info.state.messages


async def _refused_request(c: Client, subject: str, payload: bytes = b"{}") -> None:
    """A request the server must drop (no answer) and report as a permission violation."""
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await c.nc.request(subject, payload, timeout=0.5)
    await c.refused(subject)


async def _refused_publish(c: Client, subject: str, payload: bytes = FORGED) -> None:
    await c.nc.publish(subject, payload)
    await c.nc.flush(timeout=2)
    await c.refused(subject)


async def _refused_subscribe(c: Client, subject: str) -> None:
    await c.nc.subscribe(subject)
    await c.nc.flush(timeout=2)
    await c.refused(subject)


async def _dispatch119_consumer(c: Client) -> Any:
    return await c.nc.jetstream().pull_subscribe(
        "fire.confirmed.>",
        durable="dispatch119",
        stream="FIRE",
        config=ConsumerConfig(
            filter_subjects=["fire.confirmed.>", "fire.dismissed.>"],
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,
        ),
    )


# -- the permission matrix, on one node -----------------------------------------------------


async def test_each_user_is_refused_outside_its_job(tmp_path: Path) -> None:
    async with shipped_single(tmp_path) as server:
        async with client(server.url, "gateway") as gateway:
            await ensure_stream(gateway.nc.jetstream(), StreamSettings(name="FIRE"))  # its job
            assert not gateway.errors
            await _refused_subscribe(gateway, "firegate.alarm.*")  # cannot answer the alarm API
            await _refused_request(gateway, "firegate.alarm.confirm", b'{"id": "x"}')
            await _refused_publish(gateway, "fire.confirmed.SITE-1")  # decisions are the lifecycle's
            await _refused_request(gateway, "$JS.API.STREAM.DELETE.FIRE")
        async with client(server.url, "dispatch119") as sub119:
            await _dispatch119_consumer(sub119)  # its job: its durable consumer
            assert not sub119.errors
            await _refused_publish(sub119, "fire.confirmed.SITE-1")
            await _refused_publish(sub119, "fire.dismissed.SITE-1")
            await _refused_request(sub119, "$JS.API.STREAM.DELETE.FIRE")
            await _refused_request(sub119, "$JS.API.STREAM.PURGE.FIRE")
            await _refused_request(sub119, "$JS.API.CONSUMER.DURABLE.CREATE.FIRE.peek")  # no other consumer
            await _refused_request(sub119, "$JS.API.CONSUMER.MSG.NEXT.FIRE.lifecycle")  # nor another's
            await _refused_subscribe(sub119, "fire.>")  # no live tap on the events
            await _refused_subscribe(sub119, "_INBOX.>")  # nor anyone else's replies
            await _refused_subscribe(sub119, "_INBOX_lifecycle.>")
        async with client(server.url, "seat-1") as seat:
            await _refused_request(seat, "$JS.API.STREAM.DELETE.FIRE")
            await _refused_request(seat, "$JS.API.STREAM.PURGE.FIRE")
            await _refused_request(seat, "$JS.API.STREAM.INFO.FIRE")
            await _refused_publish(seat, "fire.alarm.889")
            await _refused_publish(seat, "fire.confirmed.SITE-1")
            await _refused_subscribe(seat, "fire.>")
            await _refused_request(seat, "firegate.cmd.889.reset")  # no device commands either
        async with client(server.url, "lifecycle") as lifecycle:
            await _refused_publish(lifecycle, "fire.alarm.889")  # cannot invent a device's alarm
            await _refused_request(lifecycle, "$JS.API.STREAM.DELETE.FIRE")
            await _refused_request(lifecycle, "$JS.API.CONSUMER.MSG.NEXT.FIRE.dispatch119")
        async with client(server.url, "forwarders") as forwarders:
            await _refused_publish(forwarders, "fire.alarm.889")
            await _refused_request(forwarders, "$JS.API.CONSUMER.MSG.NEXT.FIRE.lifecycle")
            await _refused_request(forwarders, "$JS.API.CONSUMER.DELETE.FIRE.dispatch119")
            await _refused_request(forwarders, "$JS.API.STREAM.DELETE.FIRE")
        async with client(server.url, "monitor") as monitor:
            assert await _stream_messages(monitor) == 0  # reads what streams hold
            consumers = await monitor.nc.jetstream().consumers_info("FIRE")
            assert [c.name for c in consumers] == ["dispatch119"]
            assert not monitor.errors
            await _refused_request(monitor, "$JS.API.STREAM.DELETE.FIRE")
            await _refused_request(monitor, "$JS.API.CONSUMER.DELETE.FIRE.dispatch119")
            await _refused_publish(monitor, "fire.alarm.889")
            await _refused_subscribe(monitor, "fire.>")
            await _refused_subscribe(monitor, "_INBOX_gateway.>")
            assert await _stream_messages(monitor) == 0  # none of the refused publishes got in
        assert server.violations(), "the server logs each refusal"


async def test_a_fire_alarm_forged_by_the_119_user_never_reaches_the_stream(tmp_path: Path) -> None:
    async with (
        shipped_single(tmp_path) as server,
        client(server.url, "gateway") as gateway,
        client(server.url, "dispatch119") as sub119,
        client(server.url, "monitor") as monitor,
    ):
        await ensure_stream(gateway.nc.jetstream(), StreamSettings(name="FIRE"))
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await sub119.nc.jetstream().publish("fire.alarm.889", FORGED, timeout=1.0)
        await sub119.refused("fire.alarm.889")
        await _refused_publish(sub119, "fire.alarm.889")
        assert await _stream_messages(monitor) == 0
        # the gateway's own publish on the same subject is stored: the refusal is the user's
        await gateway.nc.jetstream().publish("fire.alarm.889", b"{}", timeout=2.0)
        assert await _stream_messages(monitor) == 1
        refusals = server.violations()
        assert any('"FIREGATE/user:dispatch119"' in line and "fire.alarm.889" in line for line in refusals)


async def test_the_seat_is_attested_by_the_server_and_cannot_forge_it(tmp_path: Path) -> None:
    """What the lifecycle builds on: a request from a seat crosses into firegate's account with a
    Nats-Request-Info header written by the server, whatever header the seat sent."""
    async with (
        shipped_single(tmp_path) as server,
        client(server.url, "lifecycle") as lifecycle,
        client(server.url, "seat-2") as seat,
    ):
        seen: list[dict[str, str]] = []

        async def answer(msg: Any) -> None:
            seen.append(dict(msg.headers or {}))
            await msg.respond(b'{"ok": true}')

        await lifecycle.nc.subscribe("firegate.alarm.*", queue="firegate-lifecycle", cb=answer)
        await lifecycle.nc.flush()
        forged = {"Nats-Request-Info": json.dumps({"acc": "OPS", "user": "seat-1"})}
        reply = await seat.nc.request("firegate.alarm.confirm", b"{}", timeout=2, headers=forged)
        assert json.loads(reply.data) == {"ok": True}
        (headers,) = seen
        info = json.loads(headers["Nats-Request-Info"])
        assert (info["acc"], info["user"]) == ("OPS", "seat-2")


# -- the shipped files as files ------------------------------------------------------------


def _config_test(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [find_nats_server(), "-t", "-c", str(config)]
    return subprocess.run(command, env=env or server_env(), capture_output=True, text=True, timeout=30)


def test_the_nkeys_variant_is_a_valid_config(tmp_path: Path) -> None:
    folder = tmp_path / "nats"
    copy_shared(folder)
    single = (CONFIG_DIR / "single.conf").read_text()
    assert 'include "accounts.conf"' in single
    nkeys = single.replace('include "accounts.conf"', 'include "accounts-nkeys.conf"')
    (folder / "single.conf").write_text(nkeys)
    done = _config_test(folder / "single.conf")
    assert done.returncode == 0, done.stderr


async def test_a_role_signs_in_with_its_nkey_under_the_shipped_permissions(tmp_path: Path) -> None:
    """accounts-nkeys.conf with the gateway's EXAMPLE key replaced by a real one: firegate signs in
    with the seed in nats.nkey_file, and the role's permissions hold as with a password."""
    import nkeys

    from firegate.bus.jetstream import connect, connect_options
    from firegate.config import Nats

    folder = tmp_path / "nats"
    copy_shared(folder)
    raw_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(raw_seed)).public_key.decode()
    seed = tmp_path / "gateway.nk"
    seed.write_bytes(raw_seed)
    accounts = folder / "accounts-nkeys.conf"
    example = "UC5U2VHTHNZFXCKXHXY4PRLJJ4BISPM5VLOCEO4DDBJ5GKTWEOH3DHWP"  # the gateway's EXAMPLE key
    assert example in accounts.read_text(), "the shipped nkeys file changed: update this test"
    accounts.write_text(accounts.read_text().replace(example, public))
    (port,) = free_ports(1)
    single = (CONFIG_DIR / "single.conf").read_text()
    for old, new in {
        'include "accounts.conf"': 'include "accounts-nkeys.conf"',
        "listen: 127.0.0.1:4222": f"listen: 127.0.0.1:{port}",
        "/var/lib/nats": str(tmp_path / "store"),
    }.items():
        assert old in single
        single = single.replace(old, new)
    (folder / "single.conf").write_text(single)
    server = NatsProcess("nkeys", port, tmp_path / "nats-server.log")
    server.start(folder / "single.conf")
    try:
        await server.wait_listening()
        settings = Nats(url=server.url, nkey_file=seed, inbox_prefix="_INBOX_gateway")
        nc = await connect(
            server.url, "test-gateway", inbox_prefix="_INBOX_gateway", **connect_options(settings)
        )
        try:
            await nc.publish("fire.alarm.1", b"{}")  # the gateway's job
            await nc.subscribe("firegate.alarm.confirm")  # not its job: answering the alarm API
            await nc.flush(timeout=2)
            await wait_until(lambda: any("firegate.alarm.confirm" in v for v in server.violations()), 5)
            assert not any("fire.alarm.1" in v for v in server.violations())
        finally:
            await nc.close()
    finally:
        server.stop()


def test_an_unset_password_stops_the_server(tmp_path: Path) -> None:
    """accounts.conf takes each password from the environment: one missing is an error at start,
    never a user without a password."""
    folder = tmp_path / "nats"
    copy_shared(folder)
    (folder / "single.conf").write_text((CONFIG_DIR / "single.conf").read_text())
    env = {k: v for k, v in server_env().items() if k != "NATS_MONITOR_PASSWORD"}
    done = _config_test(folder / "single.conf", env)
    assert done.returncode != 0 and "NATS_MONITOR_PASSWORD" in done.stdout + done.stderr


async def test_the_cluster_files_start_three_nodes_that_hold_an_r3_stream(tmp_path: Path) -> None:
    async with shipped_cluster(tmp_path) as servers:
        urls = ",".join(s.url for s in servers)
        async with client(urls, "gateway") as gateway:
            js = gateway.nc.jetstream()
            deadline = time.monotonic() + 20
            while True:  # the cluster elects its JetStream meta leader first
                try:
                    info = await ensure_stream(js, StreamSettings(name="FIRE", num_replicas=3))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.25)
            assert info.config.num_replicas == 3
            ack = await js.publish("fire.alarm.889", b"{}", timeout=5, headers={"Nats-Msg-Id": "a-1"})
            assert ack.stream == "FIRE"
        async with client(urls, "dispatch119") as sub119:
            await _refused_publish(sub119, "fire.alarm.889")  # the same permissions on every node


# -- firegate split into its roles, each with its own user ---------------------------------

SITES = """
sites:
  SH-XH-0001:
    unit: 上海市徐汇区示例大厦
    uitds: [889]
"""


def _role(tmp_path: Path, role: str, url: str, config: Path, **env: str) -> Firegate:
    workdir = tmp_path / role
    workdir.mkdir()
    fg = Firegate(workdir, "--config", str(config), "--role", role)
    fg.env.update(FIREGATE_NATS__URL=url, FIREGATE_NATS__INBOX_PREFIX=inbox_prefix(role), **env)
    fg.env["FIREGATE_LOG__LEVEL"] = "DEBUG"
    return fg


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [FIREGATE, *args], capture_output=True, text=True, timeout=30, env=env
    )


async def test_a_fire_goes_from_device_to_119_through_roles_each_with_its_own_user(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(SITES, encoding="utf-8")
    # the forwarders' password in the config file, the gateway's from a file, the lifecycle's
    # from the environment: none of them may show up in a log or in `config check`
    (tmp_path / "gateway.pw").write_text(PASSWORDS["gateway"] + "\n")
    async with FakeDispatch119() as fake, shipped_single(tmp_path) as server:
        config = tmp_path / "firegate.yaml"
        config.write_text(
            f"sites: {tmp_path / 'sites.yaml'}\n"
            f"dispatch119:\n  url: {fake.url}\n  timeout: 1\n  backoff_initial: 0.1\n  backoff_max: 0.5\n"
            "alarms:\n  auto_confirm:\n    manual: false\n    escalate_after: null\n",
            encoding="utf-8",
        )
        forwarders_config = tmp_path / "forwarders.yaml"
        forwarders_config.write_text(
            config.read_text() + f"nats:\n  user: forwarders\n  password: {PASSWORDS['forwarders']}\n",
            encoding="utf-8",
        )
        roles = [
            _role(
                tmp_path,
                "gateway",
                server.url,
                config,
                FIREGATE_NATS__USER="gateway",
                FIREGATE_NATS__PASSWORD_FILE=str(tmp_path / "gateway.pw"),
            ),
            _role(
                tmp_path,
                "lifecycle",
                server.url,
                config,
                FIREGATE_NATS__USER="lifecycle",
                FIREGATE_NATS__PASSWORD=PASSWORDS["lifecycle"],
            ),
            _role(tmp_path, "forwarders", server.url, forwarders_config),
        ]
        (tmp_path / "seat-1.pw").write_text(PASSWORDS["seat-1"] + "\n")
        seat_env = clean_env(  # the seat's password from a file, as the guide shows a seat set up
            FIREGATE_NATS__URL=server.url,
            FIREGATE_NATS__USER="seat-1",
            FIREGATE_NATS__PASSWORD_FILE=str(tmp_path / "seat-1.pw"),
        )
        outputs: list[str] = []
        try:
            for fg in roles:
                await asyncio.to_thread(fg.start)
            gateway = roles[0]
            async with client(server.url, "dispatch119") as sub119:
                sub = await _dispatch119_consumer(sub119)
                done = await _cli(
                    gateway.env,
                    "sim",
                    "alarm",
                    "--port",
                    str(gateway.gb),
                    "--device",
                    "889",
                    "--json",
                    "--real",
                )
                assert done.returncode == 0 and json.loads(done.stdout)["outcome"] == "confirmed", done

                rows: list[dict[str, Any]] = []

                async def listed() -> bool:
                    done = await _cli(seat_env, "alarm", "list", "--json")
                    outputs.append(done.stdout + done.stderr)
                    rows[:] = json.loads(done.stdout) if done.returncode == 0 else []
                    return bool(rows)

                await wait_until(listed, 15, 0.2)
                confirm = ("alarm", "confirm", rows[0]["id"], "--operator", "zhang", "--json")
                decided = await _cli(seat_env, *confirm)
                outputs.append(decided.stdout + decided.stderr)
                assert decided.returncode == 0, decided
                answer = json.loads(decided.stdout)
                assert (answer["decided_by"], answer["decided_by_user"]) == ("zhang", "OPS/seat-1")

                (msg,) = await sub.fetch(1, timeout=10)  # the 119 subscriber's durable consumer
                event = json.loads(msg.data)
                assert event["type"] == "fire_confirmed"
                assert event["incident"]["confirmed_by"] == "zhang"  # claimed
                assert event["incident"]["confirmed_by_user"] == "OPS/seat-1"  # attested
                await msg.ack()

                (key,) = await fake.wait_for(1, 10)  # and the forwarders' POST to 119
                body = fake.incidents[key.split(":")[0]]
                assert (body["confirmed_by"], body["confirmed_by_user"]) == ("zhang", "OPS/seat-1")
                done = await _cli(seat_env, "alarm", "list", "--json")
                outputs.append(done.stdout + done.stderr)
                (row,) = json.loads(done.stdout)
                assert (row["decided_by"], row["decided_by_user"]) == ("zhang", "OPS/seat-1")

                # the seat's CLI cannot reach what is not its job, and says why
                started = time.monotonic()
                denied = await _cli(seat_env, "deadletter", "list")
                outputs.append(denied.stdout + denied.stderr)
                assert denied.returncode != 0
                assert "refused" in denied.stderr and "seat-1" in denied.stderr, denied.stderr
                assert "Timeout" not in denied.stderr and time.monotonic() - started < 4  # no wait
                started = time.monotonic()
                denied = await _cli(seat_env, "device", "889", "read", "--type", "81")
                outputs.append(denied.stdout + denied.stderr)
                assert denied.returncode != 0 and "refused" in denied.stderr, denied.stderr
                assert time.monotonic() - started < 4  # not the command's 45 s timeout
            checked = await _cli(clean_env(), "config", "check", str(forwarders_config))
            outputs.append(checked.stdout + checked.stderr)
            assert checked.returncode == 0, checked
        finally:
            for fg in roles:
                if fg.proc is not None and fg.proc.poll() is None:
                    fg.signal(signal.SIGTERM)
            for fg in roles:
                if fg.proc is not None:
                    try:
                        await asyncio.to_thread(fg.proc.wait, 15)
                    except subprocess.TimeoutExpired:
                        fg.kill_all()
        logs = "\n".join(fg.log.read_text(errors="replace") for fg in roles)
        assert "incident" in logs and "OPS/seat-1" in logs  # the logs were written, at DEBUG
        everything = logs + "\n".join(outputs) + server.log_text()
        assert leaked(everything) == [], "a password appears in a log or in CLI output"


async def test_lifecycle_and_forwarders_in_one_process_with_their_shipped_user(tmp_path: Path) -> None:
    """The guide's usual split: `--role lifecycle --role forwarders` as `lifecycle-forwarders`
    becomes ready (its consumers, buckets and the dead-letter stream allowed), with no violation."""
    async with shipped_single(tmp_path) as server:
        fg = Firegate(tmp_path, "--role", "lifecycle", "--role", "forwarders")
        fg.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_NATS__USER="lifecycle-forwarders",
            FIREGATE_NATS__PASSWORD=PASSWORDS["lifecycle-forwarders"],
            FIREGATE_NATS__INBOX_PREFIX=inbox_prefix("lifecycle-forwarders"),
            FIREGATE_DISPATCH119__URL="http://127.0.0.1:9/",
        )
        try:
            await asyncio.to_thread(fg.start)  # returns once /readyz answers 200
        finally:
            fg.kill_all()
        assert server.violations() == []


async def _start_failing(fg: Firegate) -> int | None:
    """`firegate run` that must stop by itself: its exit status (it is killed after 30 s)."""
    await asyncio.to_thread(_spawn, fg)
    try:
        assert fg.proc is not None
        return await asyncio.to_thread(fg.proc.wait, 30)
    finally:
        fg.kill_all()


def _spawn(fg: Firegate) -> None:
    """`firegate run` without waiting for it to be ready (it never will be here)."""
    with fg.log.open("ab") as out:
        fg.proc = subprocess.Popen(
            [FIREGATE, "run", *fg.args],
            cwd=fg.workdir,
            env=fg.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _readyz(fg: Firegate) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.http}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _log_lines(fg: Firegate) -> list[dict[str, Any]]:
    return [json.loads(x) for x in fg.log.read_text().splitlines() if x.startswith("{")]


async def test_a_role_started_with_another_roles_user_stops_naming_user_subject_and_setting(
    tmp_path: Path,
) -> None:
    """The lifecycle run with the gateway's user cannot open its KV bucket: the start stops with
    one message naming the user, the refused subject and the setting, and no traceback."""
    async with shipped_single(tmp_path) as server:
        fg = Firegate(tmp_path, "--role", "lifecycle")
        fg.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_NATS__USER="gateway",
            FIREGATE_NATS__PASSWORD=PASSWORDS["gateway"],
            FIREGATE_NATS__INBOX_PREFIX=inbox_prefix("gateway"),
        )
        code = await _start_failing(fg)
        text = fg.log.read_text()
        assert code == 1 and "Traceback" not in text, text[-3000:]
        (last,) = [x for x in _log_lines(fg) if x["msg"].startswith("cannot start")]
        assert last["key"] == "nats.user" and last["value"] == "gateway"
        assert "refused publish to '$js.api.stream.info.kv_fire_alarms'" in last["msg"]
        assert "NATS user 'gateway' (nats.user)" in last["msg"]
        assert leaked(text) == []


async def test_a_wrong_password_stops_naming_the_user_and_shows_no_password(tmp_path: Path) -> None:
    """The server is there and refuses who we say we are: the credentials' key, not nats.url;
    a password in the URL is never shown."""
    async with shipped_single(tmp_path) as server:
        fg = Firegate(tmp_path, "--role", "gateway")
        url = server.url.replace("nats://", "nats://gateway:not-the-pw-LEAKME7@")
        fg.env.update(FIREGATE_NATS__URL=url, FIREGATE_NATS__INBOX_PREFIX=inbox_prefix("gateway"))
        code = await _start_failing(fg)
        text = fg.log.read_text()
        assert code == 1 and "LEAKME7" not in text, text[-2000:]
        (last,) = [x for x in _log_lines(fg) if x["msg"].startswith("cannot start")]
        assert last["key"] == "nats.url" and "***" in last["value"]  # the URL carried them
        (tmp_path / "two").mkdir()
        fg2 = Firegate(tmp_path / "two", "--role", "gateway")
        fg2.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_NATS__USER="gateway",
            FIREGATE_NATS__PASSWORD="not-the-pw-LEAKME7",
            FIREGATE_NATS__INBOX_PREFIX=inbox_prefix("gateway"),
        )
        code = await _start_failing(fg2)
        text = fg2.log.read_text()
        assert code == 1 and "LEAKME7" not in text, text[-2000:]
        (last,) = [x for x in _log_lines(fg2) if x["msg"].startswith("cannot start")]
        assert (last["key"], last["value"]) == ("nats.user", "gateway")


async def test_a_role_without_its_inbox_prefix_stops_naming_the_setting(tmp_path: Path) -> None:
    async with shipped_single(tmp_path) as server:
        fg = Firegate(tmp_path, "--role", "gateway")
        fg.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_NATS__USER="gateway",
            FIREGATE_NATS__PASSWORD=PASSWORDS["gateway"],
        )
        code = await _start_failing(fg)
        (last,) = [x for x in _log_lines(fg) if x["msg"].startswith("cannot start")]
        assert code == 1 and last["key"] == "nats.inbox_prefix", last
        assert "set nats.inbox_prefix" in last["msg"] and "NATS user 'gateway'" in last["msg"]


RUNTIME_REFUSAL = """
jetstream { store_dir: "STORE", max_memory_store: 64MB, max_file_store: 100GB }
authorization {
  users: [
    { user: lc, password: example-only-lc-pw,
      permissions: { publish: ">", subscribe: { allow: [">"], deny: ["firegate.alarm.*"] } } }
  ]
}
"""


async def test_a_permission_refused_while_running_is_logged_once_counted_and_survived(tmp_path: Path) -> None:
    """A lifecycle whose user may do everything but serve the alarm API keeps running (its API
    retried, not ready), says once which user, subject and setting, and counts each refusal."""
    from tests.bus.test_auth import nats_server_with

    config = RUNTIME_REFUSAL.replace("STORE", str(tmp_path / "store"))
    async with nats_server_with(tmp_path, config) as port:
        fg = Firegate(tmp_path, "--role", "lifecycle")
        fg.env.update(
            FIREGATE_NATS__URL=f"nats://127.0.0.1:{port}",
            FIREGATE_NATS__USER="lc",
            FIREGATE_NATS__PASSWORD="example-only-lc-pw",
        )
        await asyncio.to_thread(_spawn, fg)
        try:

            def refusals() -> list[dict[str, Any]]:
                assert fg.proc is not None and fg.proc.poll() is None, fg.log.read_text()[-2000:]
                return [x for x in _log_lines(fg) if "refused" in x["msg"] and x["level"] == "ERROR"]

            def counted_more(than: float) -> Callable[[], bool]:
                return lambda: counted() > than

            def counted() -> float:
                for line in fg.metrics().splitlines():
                    if line.startswith('firegate_nats_permission_errors_total{operation="subscribe"}'):
                        return float(line.split()[-1])
                return 0.0

            await wait_until(lambda: len(refusals()) >= 3, 20, 0.1)
            first = await asyncio.to_thread(counted)
            await wait_until(counted_more(first), 20, 0.2)  # retried, and counted again
            assert fg.proc is not None and fg.proc.poll() is None, "a permission error must not end it"
            logged = [x["msg"] for x in refusals()]
            assert len(logged) == 3, logged  # once per subject, however often it is retried
            for action in ("list", "confirm", "dismiss"):
                expected = f"subscribe to 'firegate.alarm.{action}' for NATS user 'lc' (nats.user)"
                assert any(expected in m for m in logged), logged
            status, body = await asyncio.to_thread(_readyz, fg)
            assert status == 503 and "the alarm API is not served" in body, body
            assert "example-only-lc-pw" not in fg.log.read_text()
        finally:
            fg.kill_all()


def test_config_check_never_shows_a_secret(tmp_path: Path) -> None:
    secrets = {"nats": "cfg-nats-secret-81x", "119": "cfg-119-token-93y", "mqtt": "cfg-mqtt-pw-27z"}
    good = tmp_path / "good.yaml"
    good.write_text(
        f"nats:\n  url: nats://127.0.0.1:4299\n  user: u\n  password: {secrets['nats']}\n"
        f"dispatch119:\n  url: http://127.0.0.1:9/x\n  token: {secrets['119']}\n"
        f"faults:\n  mqtt:\n    - url: mqtt://127.0.0.1:1883\n      password: {secrets['mqtt']}\n"
    )
    bad = tmp_path / "bad.yaml"  # secrets of a wrong type, and beside a broken key
    bad.write_text(
        f"nats:\n  url: nats://127.0.0.1:4299\n  user: u\n  password: [{secrets['nats']}]\n"
        f"  connect_timeout: -1\n"
        f"dispatch119:\n  url: http://u:{secrets['119']}@127.0.0.1:9/x\n  token: {{a: {secrets['mqtt']}}}\n"
    )
    (tmp_path / "pw").write_text(secrets["nats"])
    both = tmp_path / "both.yaml"  # in clear and as a file, differing
    both.write_text(f"nats:\n  user: u\n  password: other-{secrets['119']}\n  password_file: pw\n")
    env = clean_env()
    check = [FIREGATE, "config", "check"]
    results = [
        subprocess.run([*check, str(f)], capture_output=True, text=True, env=env, timeout=30)
        for f in (good, bad, both)
    ]
    assert results[0].returncode == 0, results[0]
    assert results[1].returncode != 0 and "nats.password" in results[1].stderr
    assert results[2].returncode != 0 and "password_file" in results[2].stderr
    for done in results:
        assert leaked(done.stdout + done.stderr, secrets) == [], done


def test_a_secret_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firegate.config import load_settings

    for key in [k for k in os.environ if k.startswith("FIREGATE_")]:
        monkeypatch.delenv(key)
    (tmp_path / "pw").write_text("from-a-file\n")
    config = tmp_path / "f.yaml"
    config.write_text("nats:\n  user: u\n  password_file: pw\ndispatch119:\n  token_file: pw\n")
    settings = load_settings(config)
    assert settings.nats.password is not None and settings.dispatch119.token is not None
    assert settings.nats.password.get_secret_value() == "from-a-file"  # the newline stripped
    assert settings.dispatch119.token.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings) and "from-a-file" not in str(settings.nats)
    monkeypatch.setenv("FIREGATE_NATS__TOKEN_FILE", str(tmp_path / "pw"))
    token = load_settings(None).nats.token
    assert token is not None and token.get_secret_value() == "from-a-file"
    monkeypatch.delenv("FIREGATE_NATS__TOKEN_FILE")
    monkeypatch.setenv("FIREGATE_NATS__USER", "u")
    monkeypatch.setenv("FIREGATE_NATS__PASSWORD", "from-the-env")
    password = load_settings(None).nats.password
    assert password is not None and password.get_secret_value() == "from-the-env"
