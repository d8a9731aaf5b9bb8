#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 for herald's
# tests and users, without Docker: needs only Java 17+ and Maven (the broker's
# jars come from Maven Central via scripts/kafka/pom.xml and stay in ~/.m2).
#
#   scripts/kafka.sh start          start (or say it is running); exit 1 on failure
#   scripts/kafka.sh stop [--clean] SIGTERM, up to 30 s, then SIGKILL; --clean
#                                   also deletes the data dir
#   scripts/kafka.sh reset          same as stop --clean
#   scripts/kafka.sh status         print "running" and exit 0 if the port answers
#   scripts/kafka.sh logs [-f]      tail the broker's logs
#
# Environment:
#   HERALD_KAFKA_DATA  data dir: config, pid, logs, partitions (/tmp/herald-kafka)
#   HERALD_KAFKA_HOME  jar cache (~/.cache/herald-kafka)
#   HERALD_KAFKA_PORT  client port (9092); HERALD_KAFKA_CONTROLLER_PORT (9093)
#   HERALD_KAFKA_START_TIMEOUT  seconds to wait for readiness (90)
#   HERALD_KAFKA_MVN_ARGS  extra mvn arguments, e.g. -Dmaven.repo.local=/tmp/m2
#   JAVA_HOME          java is $JAVA_HOME/bin/java, else java on PATH
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_DIR="$SCRIPT_DIR/kafka"
POM="$KAFKA_DIR/pom.xml"
LOG4J_CONF="$KAFKA_DIR/log4j2.properties"

HOST=127.0.0.1
PORT="${HERALD_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${HERALD_KAFKA_CONTROLLER_PORT:-9093}"
DATA="${HERALD_KAFKA_DATA:-/tmp/herald-kafka}"
CACHE="${HERALD_KAFKA_HOME:-$HOME/.cache/herald-kafka}"
START_TIMEOUT="${HERALD_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30

PID_FILE="$DATA/kafka.pid"
OUT_FILE="$DATA/kafka.out"        # the JVM's stdout/stderr
LOG_DIR="$DATA/logs"              # log4j2: server.log (WARN+, and "started")
SERVER_LOG="$LOG_DIR/server.log"
KRAFT_DIR="$DATA/kraft"           # log.dirs (metadata + partitions)
CONFIG="$DATA/server.properties"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

say() { echo "kafka: $*"; }
die() { echo "kafka: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$HOST/${1:-$PORT}") 2>/dev/null; }

# One start/stop at a time per data dir (fd 9; the broker must not inherit it).
lock() { mkdir -p "$DATA"; exec 9>"$DATA/.lock"; if command -v flock >/dev/null; then flock 9; fi; }
file_size() { if [[ -f "$1" ]]; then wc -c <"$1" | tr -d ' '; else echo 0; fi; }
sha() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi; }

# The pid from the pid file, if that process is alive and is our broker.
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  local args
  if [[ -r "/proc/$pid/cmdline" ]]; then args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  else args="$(ps -o args= -p "$pid" 2>/dev/null || true)"; fi
  [[ "$args" == *kafka.Kafka* ]] || return 1
  echo "$pid"
}

# Copy the broker's runtime jars into a cache dir named after the pom's hash, so
# a version change in the pom fetches a new set; ~/.m2 keeps the downloads.
ensure_jars() {
  local hash
  hash="$(sha "$POM" | cut -c1-12)"
  LIB="$CACHE/lib-$hash"
  [[ -f "$LIB/.complete" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
  mkdir -p "$CACHE"
  local tmp="$CACHE/.lib-$hash.$$" mvnlog="$CACHE/mvn.log"
  rm -rf "$tmp"
  say "fetching Kafka jars with Maven into $LIB ..."
  # shellcheck disable=SC2086
  if ! mvn -q -B -f "$POM" ${HERALD_KAFKA_MVN_ARGS:-} \
      dependency:copy-dependencies -Dkafka.lib.dir="$tmp" >"$mvnlog" 2>&1; then
    tail -n 40 "$mvnlog" >&2
    rm -rf "$tmp"
    die "mvn failed (full log: $mvnlog)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn gave no kafka jar (see $mvnlog)"
  touch "$tmp/.complete"
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
}

java_cp() { "$JAVA" -Xmx256m -cp "$LIB/*" -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" "$@"; }

write_config() {
  cat >"$CONFIG" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KRAFT_DIR
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
}

cmd_start() {
  local pid
  lock
  if pid="$(running_pid)"; then
    if port_open; then say "already running on $HOST:$PORT (pid $pid)"; return 0; fi
    say "pid $pid alive but $HOST:$PORT not answering yet; waiting"
  else
    port_open && die "$HOST:$PORT is already in use by a process this script did not start"
    port_open "$CONTROLLER_PORT" && die "$HOST:$CONTROLLER_PORT (controller) is already in use; set HERALD_KAFKA_CONTROLLER_PORT"
    rm -f "$PID_FILE"
    local jv
    jv="$("$JAVA" -version 2>&1 || true)"; jv="${jv%%$'\n'*}"
    [[ "$jv" =~ \"(1[7-9]|[2-9][0-9]) ]] || die "Kafka 4 needs Java 17+; $JAVA says: ${jv:-nothing}"
    ensure_jars
    mkdir -p "$DATA" "$LOG_DIR" "$KRAFT_DIR"
    write_config
    if [[ ! -f "$KRAFT_DIR/meta.properties" ]]; then
      local cid
      cid="$(java_cp kafka.tools.StorageTool random-uuid)"
      java_cp kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cid" \
        --standalone --ignore-formatted >"$DATA/format.out" 2>&1 \
        || { cat "$DATA/format.out" >&2; die "formatting $KRAFT_DIR failed"; }
    fi
    : >"$OUT_FILE"
    # Only a "started" line written after this offset counts (the log is kept).
    LOG_OFFSET="$(file_size "$SERVER_LOG")"
    # setsid: own session, so the broker outlives the shell or job that ran us.
    # The child writes its own pid, then becomes java (same pid).
    local setsid=""; command -v setsid >/dev/null && setsid=setsid
    nohup $setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
      "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
      -cp "$LIB/*" kafka.Kafka "$CONFIG" >>"$OUT_FILE" 2>&1 </dev/null 9>&- &
  fi

  local t0=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  pid=""
  while ((SECONDS < deadline)); do
    [[ -z "$pid" && -s "$PID_FILE" ]] && pid="$(cat "$PID_FILE")"
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      fail_start "broker exited during startup"
    fi
    if [[ -n "$pid" ]] && port_open && started_since "${LOG_OFFSET:-0}"; then
      say "ready on $HOST:$PORT (pid $pid, $((SECONDS - t0))s)"
      return 0
    fi
    sleep 0.5
  done
  fail_start "not ready after ${START_TIMEOUT}s (still running as pid ${pid:-?}; 'scripts/kafka.sh stop' to end it)"
}

started_since() {
  local off="$1" size
  size="$(file_size "$SERVER_LOG")"
  ((size < off)) && off=0   # rolled over since
  # grep -c reads to the end: no SIGPIPE for tail under pipefail
  tail -c +"$((off + 1))" "$SERVER_LOG" 2>/dev/null | grep -c 'Kafka Server started' >/dev/null
}

fail_start() {
  {
    echo "kafka: $1"
    echo "--- last 40 lines of $OUT_FILE"; tail -n 40 "$OUT_FILE" 2>/dev/null || true
    echo "--- last 40 lines of $SERVER_LOG"; tail -n 40 "$SERVER_LOG" 2>/dev/null || true
  } >&2
  exit 1
}

cmd_stop() {
  local clean="${1:-}" pid
  [[ -z "$clean" || "$clean" == "--clean" ]] || die "usage: $0 stop [--clean]"
  [[ -d "$DATA" ]] && lock
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$PID_FILE"
  if [[ "$clean" == "--clean" ]]; then
    case "$DATA" in /|"$HOME"|"") die "refusing to delete '$DATA'";; esac
    rm -rf "$DATA"
    say "deleted $DATA"
  fi
}

cmd_status() {
  local pid
  if port_open; then
    if pid="$(running_pid)"; then echo "running (pid $pid, $HOST:$PORT)"; else echo "running ($HOST:$PORT, not started by this script)"; fi
    return 0
  fi
  echo "not running"
  return 1
}

cmd_logs() {
  local files=()
  [[ -f "$OUT_FILE" ]] && files+=("$OUT_FILE")
  [[ -f "$SERVER_LOG" ]] && files+=("$SERVER_LOG")
  ((${#files[@]})) || die "no logs in $DATA"
  if [[ "${1:-}" == "-f" ]]; then exec tail -n 100 -F "${files[@]}"; fi
  tail -n 100 "${files[@]}"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop "${2:-}" ;;
  reset) cmd_stop --clean ;;
  status) cmd_status ;;
  logs) cmd_logs "${2:-}" ;;
  *) echo "usage: $0 start|stop [--clean]|reset|status|logs [-f]" >&2; exit 2 ;;
esac
