#!/usr/bin/env bash
# Hub database backup (seed §2.3, §8.1 tier 3), run daily at 03:00 by cron (see docs/runbook.md):
#   1. pg_dump in custom format, read back with pg_restore --list, sha256 beside it
#   2. rotation by the script itself: keep the newest backup of each of the last 14 days, then of 8 more
#      ISO weeks, then of 3 more months (borg's "prune" rules: a backup kept by an earlier rule does
#      not count for a later one, so a long history holds exactly 14 + 8 + 3 backups)
#   3. off-site copy with rclone when BACKUP_RCLONE_REMOTE is set, and the same rotation there
#   4. backup-status.json (seed §8.3 shape) for the monitor
#
# Connection and binaries: see backup-lib.sh (PG* env or DATABASE_URL; pg_dump/pg_restore from PATH).
# Settings (env):
#   BACKUP_DIR             where backups live                  default /var/backups/letsbe-hub
#   BACKUP_KEEP_DAILY      days kept                           default 14 (at least 1)
#   BACKUP_KEEP_WEEKLY     further ISO weeks kept              default 8
#   BACKUP_KEEP_MONTHLY    further months kept                 default 3
#   BACKUP_RCLONE_REMOTE   e.g. offsite:letsbe-hub-backups     default unset = no off-site copy
#   BACKUP_STATUS_FILE     default $BACKUP_DIR/backup-status.json
#   BACKUP_NOW             the time this backup is named after (tests use it to walk a calendar); default now
#
# Exit codes, for the cron monitor:
#   0  a new verified backup exists (and off-site, when configured); rotation done
#   1  usage or configuration error; nothing was done
#   2  the dump failed or did not read back; no new backup, nothing deleted
#   3  the new local backup is good, but the off-site copy or off-site rotation failed
#   4  the new backup is good (and off-site), but local rotation failed; nothing deleted
#   5  another backup or restore is running
set -euo pipefail
umask 077 # dumps hold the hub's (encrypted) secrets and hashes
# shellcheck source-path=SCRIPTDIR source=backup-lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/backup-lib.sh"

case "${1:-}" in
  "") ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die 1 "unexpected argument '$1' (backup.sh takes none; see --help)" ;;
esac

KEEP_DAILY=${BACKUP_KEEP_DAILY:-14}
KEEP_WEEKLY=${BACKUP_KEEP_WEEKLY:-8}
KEEP_MONTHLY=${BACKUP_KEEP_MONTHLY:-3}
REMOTE=${BACKUP_RCLONE_REMOTE:-}
STATUS_FILE=${BACKUP_STATUS_FILE:-$BACKUP_DIR/backup-status.json}
for v in "$KEEP_DAILY" "$KEEP_WEEKLY" "$KEEP_MONTHLY"; do
  [[ $v =~ ^[0-9]+$ ]] || die 1 "BACKUP_KEEP_* must be whole numbers, got '$v'"
done
((KEEP_DAILY >= 1)) || die 1 "BACKUP_KEEP_DAILY must be at least 1, or the new backup would be deleted"
if [ -n "${BACKUP_NOW:-}" ]; then
  STAMP=$(date -u -d "$BACKUP_NOW" +%Y%m%dT%H%M%SZ 2>/dev/null) || die 1 "BACKUP_NOW '$BACKUP_NOW' is not a date"
  RUN_ISO=$(date -u -d "$BACKUP_NOW" +%Y-%m-%dT%H:%M:%SZ)
else
  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  RUN_ISO=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
DB=$(target_db)
NAME="${BACKUP_PREFIX}_${STAMP}.dump"

mkdir -p "$BACKUP_DIR" || die 1 "cannot create BACKUP_DIR $BACKUP_DIR"
take_lock 5
WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$BACKUP_DIR/.$NAME.partial" "$BACKUP_DIR/.$NAME.sha256.partial" "$STATUS_FILE.tmp"' EXIT
find "$BACKUP_DIR" -maxdepth 1 -name '.*.partial' -delete # left by a run that was killed

# --- status file ------------------------------------------------------------------------------------------------
DB_STATUS=failed DB_ERROR="" SIZE_BYTES=0 SHA=""
REMOTE_STATUS=skipped REMOTE_ERROR="" ROT_STATUS=skipped ROT_KEPT=0 ROT_DELETED=0

json_str() { # a JSON string literal (or null for empty): quotes, backslashes and control characters escaped
  [ -n "$1" ] || { printf 'null'; return; }
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/ }
  printf '"%s"' "$(tr -d '\000-\037' <<<"$s")"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
error_of() { tail -n 3 "$1" | tr '\n' ' ' | sed 's/ *$//'; }

write_status() {
  local code=$1 last_success="" uploaded=0 extra=""
  if ((code == 0 || code == 3 || code == 4)); then
    last_success=$RUN_ISO
  elif [ -f "$STATUS_FILE" ]; then # keep the last good run visible: staleness alerts (>48 h) need it
    last_success=$(sed -n 's/^  "last_success": "\(.*\)",$/\1/p' "$STATUS_FILE")
  fi
  [ "$REMOTE_STATUS" != success ] || uploaded=$SIZE_BYTES
  [ -z "$DB_ERROR" ] || extra=", \"error\": $(json_str "$DB_ERROR")"
  {
    printf '{\n'
    printf '  "last_run": "%s",\n' "$RUN_ISO"
    printf '  "duration_seconds": %d,\n' "$SECONDS"
    printf '  "exit_code": %d,\n' "$code"
    printf '  "last_success": %s,\n' "$(json_str "$last_success")"
    printf '  "databases": {\n'
    printf '    %s: {"status": "%s", "size_mb": %s, "file": %s, "sha256": %s%s}\n' \
      "$(json_str "$DB")" "$DB_STATUS" "$(mb "$SIZE_BYTES")" \
      "$(json_str "$([ "$DB_STATUS" = success ] && printf '%s' "$NAME")")" "$(json_str "$SHA")" "$extra"
    printf '  },\n'
    extra=""
    [ -z "$REMOTE_ERROR" ] || extra=", \"error\": $(json_str "$REMOTE_ERROR")"
    printf '  "remote_sync": {"status": "%s", "uploaded_mb": %s%s},\n' "$REMOTE_STATUS" "$(mb "$uploaded")" "$extra"
    printf '  "rotation": {"status": "%s", "kept": %d, "deleted": %d}\n' "$ROT_STATUS" "$ROT_KEPT" "$ROT_DELETED"
    printf '}\n'
  } >"$STATUS_FILE.tmp"
  mv -f "$STATUS_FILE.tmp" "$STATUS_FILE"
}

finish() { write_status "$1"; log "done (exit $1)"; exit "$1"; }

# --- rotation ---------------------------------------------------------------------------------------------------
# Backup names on stdin -> the names to keep on stdout. Walk newest to oldest; per rule, the newest backup of
# each period (day / ISO week / month) not kept by an earlier rule is kept, up to that rule's count.
gfs_keep() {
  local -a names periods parts
  local -A kept=()
  local rule col n count last i p
  mapfile -t names < <(grep -E "$BACKUP_NAME_RE" | LC_ALL=C sort -ru)
  ((${#names[@]})) || return 0
  mapfile -t periods < <(for p in "${names[@]}"; do stamp_of "$p"; done |
    date -u -f - '+%Y-%m-%d %G-W%V %Y-%m' 2>/dev/null)
  # A name date(1) cannot read would shift every period after it: refuse rather than delete the wrong files.
  [ "${#periods[@]}" -eq "${#names[@]}" ] || { log "rotation: a backup name is not a valid date"; return 1; }
  for rule in "0 $KEEP_DAILY" "1 $KEEP_WEEKLY" "2 $KEEP_MONTHLY"; do
    read -r col n <<<"$rule"
    count=0 last=""
    for i in "${!names[@]}"; do
      ((count < n)) || break
      read -r -a parts <<<"${periods[$i]}"
      p=${parts[$col]}
      [ "$p" != "$last" ] || continue
      last=$p
      [ -z "${kept[$i]:-}" ] || continue
      kept[$i]=1
      count=$((count + 1))
    done
  done
  for i in "${!names[@]}"; do
    [ -z "${kept[$i]:-}" ] || printf '%s\n' "${names[$i]}"
  done
}

# rotate LISTING DELETE-COMMAND...: delete (with the command, name appended) every backup in LISTING not kept;
# sets KEPT and DELETED.
rotate() {
  local listing=$1 keep f
  shift
  local -A keepset=()
  keep=$(gfs_keep <<<"$listing") || return 1
  [ -n "$keep" ] || [ -z "$listing" ] || { log "rotation: would keep nothing; refusing"; return 1; }
  while read -r f; do [ -z "$f" ] || keepset[$f]=1; done <<<"$keep"
  KEPT=${#keepset[@]} DELETED=0
  while read -r f; do
    [[ $f =~ $BACKUP_NAME_RE ]] && [ -z "${keepset[$f]:-}" ] || continue
    "$@" "$f" || return 1
    DELETED=$((DELETED + 1))
  done <<<"$listing"
}

# shellcheck disable=SC2329 # called through rotate
delete_local() { rm -f -- "$BACKUP_DIR/$1" "$BACKUP_DIR/$1.sha256" && log "rotation: deleted $1"; }

remote_path() { case $REMOTE in *: | */) printf '%s%s' "$REMOTE" "$1" ;; *) printf '%s/%s' "$REMOTE" "$1" ;; esac; }
# shellcheck disable=SC2329 # called through rotate
delete_remote() {
  rclone deletefile "$(remote_path "$1")" 2>>"$WORK/rclone.err" || return 1
  rclone deletefile "$(remote_path "$1.sha256")" 2>>"$WORK/rclone.err" || true # an old run may have missed it
  log "off-site rotation: deleted $1"
}

# --- 1. dump --------------------------------------------------------------------------------------------------
[ ! -e "$BACKUP_DIR/$NAME" ] || die 1 "$NAME already exists"
log "dumping database $DB to $BACKUP_DIR/$NAME"
PARTIAL="$BACKUP_DIR/.$NAME.partial"
if ! pg_cmd "$DB" pg_dump --format=custom --lock-wait-timeout=120000 --file="$PARTIAL" 2>"$WORK/dump.err"; then
  cat "$WORK/dump.err" >&2
  DB_ERROR="pg_dump failed: $(error_of "$WORK/dump.err")"
  finish 2
fi
if ! pg_restore --list "$PARTIAL" >/dev/null 2>"$WORK/dump.err"; then
  DB_ERROR="the dump does not read back: $(error_of "$WORK/dump.err")"
  finish 2
fi
SHA=$(sha256sum "$PARTIAL" | cut -d' ' -f1)
SIZE_BYTES=$(stat -c %s "$PARTIAL")
printf '%s  %s\n' "$SHA" "$NAME" >"$BACKUP_DIR/.$NAME.sha256.partial"
mv "$PARTIAL" "$BACKUP_DIR/$NAME"
mv "$BACKUP_DIR/.$NAME.sha256.partial" "$BACKUP_DIR/$NAME.sha256"
DB_STATUS=success
log "wrote $NAME ($(mb "$SIZE_BYTES") MB, sha256 $SHA)"

# --- 2. local rotation ----------------------------------------------------------------------------------------
code=0
if rotate "$(local_backups)" delete_local; then
  ROT_STATUS=success ROT_KEPT=$KEPT ROT_DELETED=$DELETED
  log "rotation: kept $ROT_KEPT, deleted $ROT_DELETED"
else
  ROT_STATUS=failed
  code=4
fi

# --- 3. off-site ------------------------------------------------------------------------------------------------
if [ -n "$REMOTE" ]; then
  log "copying $NAME off-site"
  if rclone copyto "$BACKUP_DIR/$NAME" "$(remote_path "$NAME")" 2>>"$WORK/rclone.err" &&
    rclone copyto "$BACKUP_DIR/$NAME.sha256" "$(remote_path "$NAME.sha256")" 2>>"$WORK/rclone.err" &&
    listing=$(rclone lsf --files-only "$REMOTE" 2>>"$WORK/rclone.err") &&
    rotate "$listing" delete_remote; then
    REMOTE_STATUS=success
  else
    cat "$WORK/rclone.err" >&2
    REMOTE_STATUS=failed
    REMOTE_ERROR="rclone failed: $(error_of "$WORK/rclone.err")"
    code=3
  fi
fi
finish "$code"
