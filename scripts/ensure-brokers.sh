#!/usr/bin/env bash
# Makes sure every broker the tests will use answers, before `npm test` runs them.
# Brokers: HERALD_BROKERS (comma separated; default memory,kafka,rabbitmq,redis).
# Kafka on localhost is started with scripts/kafka.sh when it does not answer (and left
# running: stop it with `bash scripts/kafka.sh stop`). RabbitMQ and Redis are expected
# to run already (`docker compose up -d rabbitmq redis`, or your own); a broker that does
# not answer is an error, never a skip. Only loopback addresses are checked or started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
brokers=${HERALD_BROKERS:-memory,kafka,rabbitmq,redis}

answers () { timeout 2 bash -c "</dev/tcp/$1/$2" 2>/dev/null; }

hostport () { # "scheme://user:pass@host:port/x" or "host:port" -> "host port"
  local s=${1#*://}; s=${s##*@}; s=${s%%/*}; s=${s%%,*}
  echo "${s%:*} ${s##*:}"
}

failed=0
IFS=',' read -ra list <<< "$brokers"
for b in "${list[@]}"; do
  b=$(echo "$b" | tr -d ' ')
  case "$b" in
    memory|'') ;;
    kafka)
      read -r host port <<< "$(hostport "${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}")"
      if ! answers "$host" "$port"; then
        if [[ "$host" == 127.0.0.1 || "$host" == localhost ]]; then
          echo "ensure-brokers: Kafka is not answering on $host:$port; starting it with scripts/kafka.sh"
          bash "$here/kafka.sh" start
        else
          echo "ensure-brokers: Kafka is not answering on $host:$port (KAFKA_BOOTSTRAP_SERVERS)" >&2; failed=1
        fi
      fi ;;
    rabbitmq)
      read -r host port <<< "$(hostport "${RABBITMQ_URL:-amqp://127.0.0.1:5672}")"
      port=${port:-5672}
      answers "$host" "$port" || { echo "ensure-brokers: RabbitMQ is not answering on $host:$port; start it (docker compose up -d rabbitmq), or leave it out: HERALD_BROKERS=memory,kafka,redis npm test" >&2; failed=1; } ;;
    redis)
      read -r host port <<< "$(hostport "${REDIS_URL:-redis://127.0.0.1:6379}")"
      answers "$host" "$port" || { echo "ensure-brokers: Redis is not answering on $host:$port; start it (docker compose up -d redis), or leave it out: HERALD_BROKERS=memory,kafka,rabbitmq npm test" >&2; failed=1; } ;;
    *) echo "ensure-brokers: unknown broker \"$b\" in HERALD_BROKERS; use memory, kafka, rabbitmq, redis" >&2; failed=1 ;;
  esac
done
exit $failed
