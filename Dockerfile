# Owns the Conclave node image used by docker-compose.yml: Node 20, production dependencies (tsx runs the
# TypeScript sources, RocksDB ships a prebuilt linux-x64 binary), runs as the unprivileged `node` user.
FROM node:20-slim

WORKDIR /app
ENV NODE_ENV=production

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src

# /etc/conclave holds the read-only mounts (federation.yaml, certs/); /var/lib/conclave is the data volume.
RUN mkdir -p /etc/conclave /var/lib/conclave && chown node:node /var/lib/conclave
USER node
VOLUME ["/var/lib/conclave"]
EXPOSE 7000 8443

ENTRYPOINT ["node", "bin/conclave.js"]
CMD ["start", "--config", "/etc/conclave/federation.yaml"]
