# The orchestrator as an image: the API (`serve`), workers (`worker`), the token tool (`token`) and the CI
# client (`submit`), all `orchestrator COMMAND` (docker-compose.yml shows a deployment).
#
#   docker build -t test-orchestrator .
#   docker run --rm test-orchestrator --help
#   docker run --rm -e ORCHESTRATOR_TOKEN -v "$PWD:/src" -w /src test-orchestrator \
#     submit plan.yaml --url https://orchestrator.example --wait --junit report.xml
#
# Privileges. `serve`, `token` and `submit` need none: run them with `--cap-drop ALL`. A `worker` runs
# each test under bubblewrap with its own user, mount, PID and network namespaces and cgroup limits: it
# runs as root inside the container (it drops to SANDBOX_USER, orch-sandbox, made below, before bwrap)
# and needs a container that allows namespaces and a writable cgroup tree: `--privileged` is the plain
# way (docker-compose.yml); the narrower `--cap-add SYS_ADMIN --security-opt seccomp=unconfined
# --security-opt apparmor=unconfined` lets bubblewrap run but not the cgroup limits unless the host's
# cgroup tree is mounted writable. On a dedicated test host, `npm run worker` on the machine itself
# needs neither.
FROM node:20-bookworm

# The Debian packages the project uses (scripts/debian-packages.txt: bubblewrap, debootstrap, skopeo,
# umoci, redis-server and postgresql for the embedded defaults and tests, chromium for the browser tests).
COPY scripts/debian-packages.txt /tmp/debian-packages.txt
RUN apt-get update \
 && grep -v '^\s*\(#\|$\)' /tmp/debian-packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/debian-packages.txt \
 && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin orch-sandbox

WORKDIR /app
# dependencies first (a layer kept while only sources change); `npm ci` runs the build (`prepare`)
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build \
 && chmod +x dist/src/main.js \
 && ln -s /app/dist/src/main.js /usr/local/bin/orchestrator \
 && mkdir -p /data /images

ENV NODE_ENV=production \
    DATA_DIR=/data \
    IMAGE_DIR=/images
# the API's port (HOST stays loopback unless set: with HOST=0.0.0.0 the server wants AUTH=on)
EXPOSE 4000
ENTRYPOINT ["orchestrator"]
CMD ["serve"]
