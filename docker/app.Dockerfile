# The TypeScript side of the Compose dev stack: the jaxbridge package with its
# node_modules, running examples/quickstart.ts (or `jaxbridge repl`) against
# the sidecar container over TCP with CURVE. Build context: the repository root.
#
#   docker build -f docker/app.Dockerfile -t jaxbridge-app .
#   docker build -f docker/app.Dockerfile --build-arg NODE_BASE=local/node20 -t jaxbridge-app .   # no registry
#
# NODE_BASE needs Node >= 20.19 and npm. An npm cache in docker/npm-cache/
# (scripts/docker-prepare.sh npm) makes `npm ci` work offline; without it npm
# uses the registry.
ARG NODE_BASE=node:20-slim
FROM ${NODE_BASE}
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false NO_UPDATE_NOTIFIER=1
WORKDIR /app
COPY package.json package-lock.json ./
COPY docker/npm-cache/ /tmp/npm-cache/
# Scripts are skipped: zeromq, esbuild and msgpackr ship their binaries as
# prebuilt packages, and the one that would compile (ssh2's optional
# cpu-features, under testcontainers) is not needed here.
RUN set -eu; \
    if [ -d /tmp/npm-cache/_cacache ]; then npm ci --offline --ignore-scripts --cache /tmp/npm-cache --loglevel=error; \
    else npm ci --ignore-scripts --loglevel=error; fi; \
    rm -rf /tmp/npm-cache /root/.npm; \
    node -e 'import("zeromq").then((z) => { if (!z.capability.curve) throw new Error("zeromq without CURVE"); console.log("jaxbridge-app: zeromq with CURVE, node", process.version); })'
COPY tsconfig.json ./
COPY bin/ bin/
COPY scripts/ scripts/
COPY src/ src/
COPY examples/ examples/
RUN (getent passwd 10001 >/dev/null || useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin jaxbridge) \
 && ln -s /app/bin/jaxbridge.mjs /usr/local/bin/jaxbridge
USER 10001
# JAXBRIDGE_URL: the sidecar; JAXBRIDGE_CURVE_SERVER_KEY (its .key file) and
# JAXBRIDGE_CURVE_CLIENT_KEY (this client's .key_secret) turn on CURVE.
ENV JAXBRIDGE_URL=tcp://sidecar:5555
CMD ["node", "--import", "tsx", "examples/quickstart.ts"]
