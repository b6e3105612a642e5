#!/usr/bin/env bash
# A PostgreSQL server on loopback for the test suite's second pass; prints its SQLAlchemy URL.
# Uses $JUDGEEYE_TEST_PG when set; otherwise installs Debian's postgresql (root or sudo) when
# missing, starts its cluster, and makes a role `judgeeye_test` (LOGIN CREATEDB: each test makes
# and drops its own database). Exits 1, saying why on stderr, when no server can be had.
set -euo pipefail
if [ -n "${JUDGEEYE_TEST_PG:-}" ]; then echo "$JUDGEEYE_TEST_PG"; exit 0; fi
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
  else echo "postgres.sh: needs root or sudo to install/start PostgreSQL" >&2; exit 1; fi
}
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "postgres.sh: no apt-get to install postgresql" >&2; exit 1; }
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
read -r version cluster port _ < <(pg_lsclusters -h | head -1) || true
if [ -z "${version:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1); cluster=main
  as_root pg_createcluster "$version" "$cluster" >&2
  read -r version cluster port _ < <(pg_lsclusters -h | head -1)
fi
as_root pg_ctlcluster "$version" "$cluster" start >&2 2>/dev/null || true  # already running is fine
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "postgres.sh: the server on port $port did not start" >&2; exit 1; }
as_root runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'judgeeye_test') THEN
    CREATE ROLE judgeeye_test LOGIN CREATEDB PASSWORD 'judgeeye-test';
  END IF;
END $$;
SQL
echo "postgresql+psycopg://judgeeye_test:judgeeye-test@127.0.0.1:${port}/postgres"
