# syntax=docker/dockerfile:1
# Build stage: compile TypeScript and pack the package exactly as npm would publish it.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY bin ./bin
COPY README.md LICENSE ./
RUN npm run build && npm pack --ignore-scripts --pack-destination /tmp \
  && mv /tmp/libp2p-websocket-star-rendezvous-*.tgz /tmp/rendezvous.tgz

# Runtime stage: the packed package and its production dependencies only.
FROM node:20-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    PORT=9090 \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=build /tmp/rendezvous.tgz /tmp/rendezvous.tgz
RUN npm install --omit=dev --no-audit --no-fund --prefix /app /tmp/rendezvous.tgz \
  && rm /tmp/rendezvous.tgz \
  && npm cache clean --force
USER node
EXPOSE 9090
# plain HTTP; with --key/--cert or --pfx, point it at https instead
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 9090) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini forwards SIGTERM/SIGINT to node and reaps zombies; the server stops cleanly on either
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/app/node_modules/.bin/rendezvous"]
