#!/usr/bin/env bash
# Restore the hub database from a backup.sh dump (docs/runbook.md, "Hub database corrupted" / "Hub server lost").
#
# Usage: restore.sh [--replace] [FILE | latest]
#   FILE       a backup made by backup.sh, with its .sha256 beside it; "latest" (the default) is the newest
#              backup in BACKUP_DIR
#   --replace  the target database holds tables: replace it (stop the hub services first)
#
# The dump is checked against its sha256 and read back before anything is touched, then restored in one
# transaction into a side database; only when that succeeded is the target dropped and the side database
# renamed into its place. A failed restore leaves the target as it was.
# Connection and binaries: see backup-lib.sh (PG* env or DATABASE_URL; psql/pg_restore from PATH). The
# connection's database is the target; the user must be allowed to create databases (the compose setup uses
# the Postgres superuser).
#
# Exit codes:
#   0  restored
#   1  usage or configuration error
#   2  the backup is missing, fails its checksum or does not read back; nothing changed
#   3  the target holds tables and --replace was not given, or something is connected to it; nothing changed
#   4  the restore failed; the target is as it was
#   5  a backup or restore is running
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/backup-lib.sh"

replace=false
file=latest
while (($#)); do
  case $1 in
    --replace) replace=true ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die 1 "unknown option $1 (see --help)" ;;
    *) file=$1 ;;
  esac
  shift
done

DB=$(target_db)
SIDE="${DB:0:48}_restoring"
MAINT=${RESTORE_MAINTENANCE_DB:-postgres} # where CREATE/DROP/RENAME DATABASE run from
[ "$DB" != "$MAINT" ] || die 1 "the target database must not be the maintenance database '$MAINT'"
[ -d "$BACKUP_DIR" ] || [ "$file" != latest ] || die 2 "BACKUP_DIR $BACKUP_DIR does not exist"
if [ "$file" = latest ]; then
  newest=$(local_backups | head -n 1)
  [ -n "$newest" ] || die 2 "no backup in $BACKUP_DIR"
  file="$BACKUP_DIR/$newest"
fi
[ -f "$file" ] || die 2 "no such backup: $file"
if [ -d "$BACKUP_DIR" ] && [ "$(readlink -f "$(dirname "$file")")" = "$(readlink -f "$BACKUP_DIR")" ]; then
  take_lock 5
fi
SECONDS=0

# --- 1. the backup is what backup.sh wrote ------------------------------------------------------------------------
[ -f "$file.sha256" ] || die 2 "$file.sha256 is missing: cannot tell the backup is intact"
expected=$(cut -d' ' -f1 "$file.sha256")
actual=$(sha256sum "$file" | cut -d' ' -f1)
[ "$expected" = "$actual" ] || die 2 "$file does not match its checksum (expected $expected, got $actual)"
pg_restore --list "$file" >/dev/null || die 2 "$file is not a readable pg_dump archive"
log "verified $file (sha256 $actual)"

# --- 2. the target may be replaced ------------------------------------------------------------------------------
exists=$(psql_in "$MAINT" -v db="$DB" <<<"SELECT count(*) FROM pg_database WHERE datname = :'db';") ||
  die 1 "cannot reach the database server"
if ((exists)); then
  tables=$(psql_in "$DB" <<<"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%';") || die 1 "cannot inspect database $DB"
  if ((tables)) && ! $replace; then
    die 3 "database $DB holds $tables tables; pass --replace to replace it"
  fi
fi
# A session that has just ended (this script's own look at the tables above, a service stopped a moment ago) is
# listed until its backend has exited: give such sessions up to 5 s to go before refusing.
for _ in {1..50}; do
  busy=$(psql_in "$MAINT" -v db="$DB" <<<"SELECT count(*) FROM pg_stat_activity WHERE datname = :'db';") ||
    die 1 "cannot reach the database server"
  ((busy == 0)) && break
  sleep 0.1
done
((busy == 0)) || die 3 "$busy sessions are connected to $DB: stop the hub services first"

# --- 3. restore beside it, then swap ----------------------------------------------------------------------------
OLD="${DB:0:48}_replaced"
leftover=$(psql_in "$MAINT" -v db="$OLD" <<<"SELECT count(*) FROM pg_database WHERE datname = :'db';")
((leftover == 0)) || die 1 "database $OLD exists (left by an interrupted restore?): inspect it, then drop it"
rename() { psql_in "$MAINT" -v from="$1" -v to="$2" <<<'ALTER DATABASE :"from" RENAME TO :"to";'; }
drop_side() { psql_in "$MAINT" -v db="$SIDE" <<<'DROP DATABASE IF EXISTS :"db";'; }
drop_side # left by an interrupted restore
psql_in "$MAINT" -v db="$SIDE" <<<'CREATE DATABASE :"db" TEMPLATE template0;'
log "restoring into $SIDE"
if ! pg_cmd "$SIDE" pg_restore --exit-on-error --single-transaction "$file"; then
  drop_side || true
  die 4 "pg_restore failed; $DB is unchanged"
fi
psql_in "$SIDE" <<<'ANALYZE;'
# Two renames, so that at every moment one complete database carries the name or can be renamed back.
if ((exists)) && ! rename "$DB" "$OLD"; then
  drop_side || true
  die 4 "could not move $DB aside (did a session connect to it?); $DB is unchanged"
fi
if ! rename "$SIDE" "$DB"; then
  ((exists == 0)) || rename "$OLD" "$DB" || true
  drop_side || true
  die 4 "could not rename $SIDE to $DB; $DB is unchanged"
fi
if ((exists)); then
  psql_in "$MAINT" -v db="$OLD" <<<'DROP DATABASE :"db";' || log "warning: could not drop $OLD; drop it by hand"
fi
log "restored $(basename "$file") into $DB in ${SECONDS}s"
