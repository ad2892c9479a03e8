# shellcheck shell=bash
# Shared by backup.sh and restore.sh: the Postgres connection, the backup file names, the lock and logging.
#
# Connection: libpq's own PGHOST / PGPORT / PGUSER / PGPASSWORD / PGDATABASE, or DATABASE_URL
# (postgresql://user:pass@host:port/db?..., a SQLAlchemy "+driver" suffix is accepted). DATABASE_URL wins
# when both are set. pg_dump, pg_restore and psql come from PATH, so tests and production run the same code.

BACKUP_DIR=${BACKUP_DIR:-/var/backups/letsbe-hub}
BACKUP_PREFIX=${BACKUP_PREFIX:-hub}
# hub_20260227T030000Z.dump: UTC, fixed width, so name order is time order.
BACKUP_NAME_RE="^${BACKUP_PREFIX}_[0-9]{8}T[0-9]{6}Z\\.dump\$"

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${0##*/}" "$*" >&2; }
die() { local code=$1; shift; log "error: $*"; exit "$code"; }

# postgresql+asyncpg://… -> postgresql://… (libpq does not know driver suffixes).
libpq_url() { sed -E 's#^postgres(ql)?\+[A-Za-z0-9_]+://#postgresql://#' <<<"$1"; }

pct_decode() { local s=$1; printf '%b' "${s//%/\\x}"; }

# The database the connection points at.
target_db() {
  if [ -n "${DATABASE_URL:-}" ]; then
    local rest=${DATABASE_URL#*://}
    rest=${rest%%\?*}
    case $rest in */*) pct_decode "${rest#*/}" ;; *) printf '%s' "${PGDATABASE:-${PGUSER:-postgres}}" ;; esac
  else
    printf '%s' "${PGDATABASE:-${PGUSER:-postgres}}"
  fi
}

# pg_cmd DB PROGRAM ARGS...: run a libpq program connected to database DB (same server, user and password).
pg_cmd() {
  local db=$1 prog=$2; shift 2
  if [ -n "${DATABASE_URL:-}" ]; then
    local url authority query=""
    url=$(libpq_url "$DATABASE_URL")
    authority=${url#*://}; authority=${authority%%\?*}; authority=${authority%%/*}
    case $url in *\?*) query="?${url#*\?}" ;; esac
    "$prog" --no-password --dbname="postgresql://${authority}/$(url_encode "$db")${query}" "$@"
  else
    "$prog" --no-password --dbname="$db" "$@"
  fi
}

url_encode() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [A-Za-z0-9._~-]) out+=$c ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
  done
  printf '%s' "$out"
}

# psql_in DB [psql -v args]: run the SQL on stdin in DB, stop at the first error, print bare rows.
psql_in() {
  local db=$1
  shift
  PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" pg_cmd "$db" psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# hub_20260227T030000Z.dump -> 2026-02-27T03:00:00Z
stamp_of() {
  local n=${1#"${BACKUP_PREFIX}_"}
  n=${n%.dump}
  printf '%s-%s-%sT%s:%s:%sZ\n' "${n:0:4}" "${n:4:2}" "${n:6:2}" "${n:9:2}" "${n:11:2}" "${n:13:2}"
}

# Backups in BACKUP_DIR, newest first.
local_backups() {
  find "$BACKUP_DIR" -maxdepth 1 -type f -name "${BACKUP_PREFIX}_*.dump" -printf '%f\n' |
    grep -E "$BACKUP_NAME_RE" | LC_ALL=C sort -r || true
}

# One backup or restore at a time: rotation must never delete the file a restore is reading.
take_lock() {
  exec 9>"$BACKUP_DIR/.lock"
  flock -n 9 || die "$1" "another backup or restore holds $BACKUP_DIR/.lock"
}
