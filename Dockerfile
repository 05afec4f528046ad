# meeboter service image: the API and the workers are the same image with a different command
# (`node dist/src/main.js api|worker|all`). Node 24 is the current LTS line.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY queues ./queues
COPY workers ./workers
COPY scripts ./scripts
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:24-bookworm-slim
# tini as PID 1: signals reach node (graceful shutdown on SIGTERM) and `local` bot processes are reaped.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node package.json ./
USER node
EXPOSE 3000
# The API answers /readyz on PORT; a worker-only container answers /metrics on METRICS_PORT. Both answer while
# Redis does: MongoDB away is reported there (degraded), not a reason to count the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD ["node", "-e", "const m=process.env.METRICS_PORT;fetch(m?'http://127.0.0.1:'+m+'/metrics':'http://127.0.0.1:'+(process.env.PORT||3000)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/main.js", "all"]
