# TypeScript: npm ci into node_modules/, then `npm run build` (buf + ts-proto generate the
# stubs into src/gen/, tsc compiles into dist/).
SIDECAR=(node dist/src/main.js)

setup() {
  need node "install Node.js 20 or newer"
  need npm "it comes with Node.js"
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "Node.js $(node --version) is too old; the sidecar needs 20 or newer"
  if ! [ -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the dependencies (npm ci)"
    # No package needs an install script (buf's binary comes in its platform package).
    npm ci --ignore-scripts --no-audit --no-fund --prefer-offline || die "npm ci failed"
  fi
  # Built again when a source, the proto or a setting is newer than the last build.
  if ! [ -f dist/.built ] || [ -n "$(find src test proto package-lock.json tsconfig.json buf.gen.yaml \
      -newer dist/.built -not -path 'src/gen/*' -print -quit)" ]; then
    log "generating the stubs and compiling (npm run build)"
    npm run --silent build || die "npm run build failed"
    touch dist/.built
  fi
}

unit_tests() {
  node --test dist/test/*.test.js
}
