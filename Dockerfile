# nfltr: relay and worker in one image (entrypoint `nfltr`). Build: docker build -t nfltr .
# Relay:  docker run -p 9090:9090 -p 8080:8080 -v nfltr-relay:/var/lib/nfltr nfltr \
#           relay --grpc-addr 0.0.0.0:9090 --http-addr 0.0.0.0:8080 --data-dir /var/lib/nfltr/relay
# Worker: the key is a file (a Docker/Compose secret or a read-only mount), never an argument:
#         docker run -v /etc/nfltr/api-key:/run/secrets/nfltr-api-key:ro nfltr worker \
#           --server relay.example:443 --api-key-file /run/secrets/nfltr-api-key --mcp-command "…"
# See the README, "Running as a service".

FROM node:20-slim AS build
# better-sqlite3 and node-pty compile from source when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts wait until the sources are here: `prepare` builds dist/.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts scripts
COPY bin bin
COPY src src
COPY proto proto
COPY assets assets
RUN npm rebuild --no-audit --no-fund && npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production \
    HOME=/var/lib/nfltr
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/bin bin
COPY --from=build /app/dist dist
COPY --from=build /app/assets assets
RUN ln -s /app/bin/nfltr.js /usr/local/bin/nfltr \
    && mkdir -p /var/lib/nfltr && chown node:node /var/lib/nfltr
# An unprivileged user; state (relay store, worker task folders) in the volume.
USER node
VOLUME /var/lib/nfltr
EXPOSE 9090 8080
ENTRYPOINT ["nfltr"]
CMD ["--help"]
