# tower-proxy as a container: a sidecar next to the app that calls Tower.
#
#   docker build -t tower-proxy .
#   docker run --rm -it -v tower-proxy:/var/lib/tower-proxy \
#          -e TOWER_CLIENT_ID=... -e TOWER_CLIENT_SECRET=... tower-proxy login
#   docker run -d -v tower-proxy:/var/lib/tower-proxy \
#          -e TOWER_CLIENT_ID=... -e TOWER_CLIENT_SECRET=... tower-proxy
#
# Configuration is entirely by environment (TOWER_PROXY_<SECTION>_<KEY>, see
# config.example.toml).  By default the proxy listens on 127.0.0.1:8730: in a
# Kubernetes pod that is the pod's shared loopback, so the app reaches it and
# nothing else does, and no inbound key is needed.  On a shared network
# (compose) set TOWER_PROXY_SERVER_LISTEN=0.0.0.0:8730, a key file in
# TOWER_PROXY_SERVER_INBOUND_KEYS_FILE and the service name in
# TOWER_PROXY_SERVER_ALLOWED_HOSTS (see examples/compose/).
#
# PYTHON_IMAGE may name a mirrored or locally built base with python3 and
# python3-venv (scripts/container-smoke does that where no registry is reachable).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- build: the wheel, installed with its dependencies into a venv ------------
FROM ${PYTHON_IMAGE} AS build
# Optional, for builds behind a mirror or a TLS-intercepting proxy; seen by pip only.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler and Python's headers (python3-dev only where the base lacks
# them): the wheel's request-path modules are compiled by mypyc (README, "The
# compiled build").  They stay in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && if [ ! -e "$include/Python.h" ]; then \
      apt-get install -y --no-install-recommends python3-dev; fi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
# The project's own wheel first (built in isolation by hatchling, compiled),
# then the venv gets that wheel and its dependencies, with the redis store and
# uvloop extras; no compiler, no source in the result.
RUN python3 -m venv /opt/tower-proxy \
 && HATCH_BUILD_HOOK_ENABLE_MYPYC=1 /opt/tower-proxy/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && set -- /wheels/tower_proxy-*.whl \
 && /opt/tower-proxy/bin/pip install "$1[redis,speed]" \
 && /opt/tower-proxy/bin/python -c 'import proxy; assert proxy.compiled()' \
 && /opt/tower-proxy/bin/tower-proxy --help > /dev/null

# -- runtime -------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/tower-proxy --shell /usr/sbin/nologin tower-proxy \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/tower-proxy
COPY --from=build /opt/tower-proxy /opt/tower-proxy
# TOWER_PROXY_TOKENS_PATH names the token file's path, not a secret (DL3064).
# hadolint ignore=DL3064
ENV PATH=/opt/tower-proxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOWER_PROXY_SERVER_LISTEN=127.0.0.1:8730 \
    TOWER_PROXY_TOKENS_PATH=/var/lib/tower-proxy/token.json \
    TOWER_PROXY_LOG_FORMAT=json
# The token set (0600) lives here; keep it on a volume so a restart keeps the
# refresh-token chain instead of needing a new login.
VOLUME ["/var/lib/tower-proxy"]
USER 10001:10001
WORKDIR /var/lib/tower-proxy
EXPOSE 8730
# Asks /-/readyz (or the admin address's) through the CLI: no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tower-proxy", "healthcheck"]
# Exec form: tower-proxy is PID 1 and gets SIGTERM itself (drain, exit 0).
# The default command is `tower-proxy serve`; `login`, `status`, `token`
# and `healthcheck` run the same way (`docker run ... tower-proxy login`).
ENTRYPOINT ["tower-proxy"]
CMD ["serve"]
