import type { Consumer, ConsumerGroupJoinEvent } from 'kafkajs'
import type { Logger } from '../../logger.js'
import { Backoff, sleep } from '../../time.js'
import type { OutageLog } from '../shared/outage-log.js'
import { isConnectionTrouble, kafkaReason } from './kafka-errors.js'

/** The part of a subscription its consumer's events report to. */
interface Watched {
  readonly who: string
  crashed: boolean
  joinWait: { resolve: () => void, reject: (err: unknown) => void } | undefined
}

/** What the events said that `start()` needs to know. */
export interface ConsumerEvents {
  /** The last crash kafkajs restarted from. */
  lastCrash: unknown
  /** A crash kafkajs does not restart from. */
  fatal: unknown
}

/**
 * Listens to a kafkajs consumer's events: joins, fetches (Kafka answers: the outage, if
 * one, is over), and crashes, logged once per outage through the broker's outage log.
 */
export function watchConsumer (
  sub: Watched,
  consumer: Consumer,
  o: { options: { group: string }, logger: Logger, secrets: string[], outage: OutageLog },
  on: {
    joined: (event: ConsumerGroupJoinEvent) => void
    fetched: () => void
    /** Starts the consumer again (connect + run), for a crash kafkajs will not restart from but that passes. */
    restart: () => Promise<void>
    /** True once the member has joined at least once and is not stopping: a restart is wanted. */
    running: () => boolean
  }
): ConsumerEvents {
  const { group } = o.options
  const events: ConsumerEvents = { lastCrash: undefined, fatal: undefined }
  consumer.on(consumer.events.GROUP_JOIN, on.joined)
  consumer.on(consumer.events.FETCH, () => {
    o.outage.reached()
    on.fetched()
  })
  consumer.on(consumer.events.CRASH, event => {
    const { error, restart } = event.payload
    events.lastCrash = error
    if (restart) {
      const reason = kafkaReason(error, o.secrets)
      const streak = sub.crashed
      sub.crashed = true
      if (isConnectionTrouble(reason) || o.outage.active) {
        // Kafka is away (or coming back): one line for the whole outage, from the outage log.
        o.outage.lost(sub.who, reason)
        o.logger.debug({ group, err: reason }, 'Kafka consumer crashed; kafkajs restarts it')
      } else if (streak) {
        o.logger.debug({ group, err: reason }, 'Kafka consumer crashed again; kafkajs restarts it')
      } else {
        o.logger.warn({ group, err: reason }, 'Kafka consumer crashed; kafkajs restarts it')
      }
    } else if (on.running() && passes(error, o.secrets)) {
      // kafkajs marks "Failed to find group coordinator" not retriable and never restarts
      // from it (kafkajs#1445, #1630), though it only means Kafka is still coming back.
      o.outage.lost(sub.who, kafkaReason(error, o.secrets))
      void restartUntilRunning(on, o.logger, group)
    } else {
      events.fatal = error
      o.logger.error({ group, err: kafkaReason(error, o.secrets) }, 'Kafka consumer stopped after an error it cannot recover from; restart the worker')
      sub.joinWait?.reject(error)
    }
  })
  return events
}

/** A crash that says Kafka (or its group coordinator) is not answering yet: trying again later helps. */
function passes (error: unknown, secrets: string[]): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e.name === 'KafkaJSGroupCoordinatorNotFound' || /group coordinator|coordinator is not available|coordinator is loading/i.test(e.message)) return true
  }
  return isConnectionTrouble(kafkaReason(error, secrets))
}

async function restartUntilRunning (on: { restart: () => Promise<void>, running: () => boolean }, logger: Logger, group: string): Promise<void> {
  const backoff = new Backoff(1_000, 30_000)
  while (on.running()) {
    await sleep(backoff.next())
    if (!on.running()) return
    try {
      await on.restart()
      logger.info({ group }, 'Kafka consumer started again after a crash kafkajs does not restart from')
      return
    } catch (err) {
      logger.debug({ group, err: String(err) }, 'Kafka consumer could not start again yet')
    }
  }
}
