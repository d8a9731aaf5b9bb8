import type { KafkaMessage } from 'kafkajs'
import { BrokerError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { Delivery } from '../broker.js'
import { kafkaReason } from './kafka-errors.js'
import { decodeHeaders } from './kafka-headers.js'
import type { Part } from './kafka-part.js'
import type { Entry } from './kafka-partition-flow.js'

/** What a delivery tells its subscription. */
export interface DeliveryHooks {
  group: string
  logger: Logger
  secrets: string[]
  /** Counted out of the subscription's in-flight messages (once). */
  settled: () => void
  waiting: (on: boolean) => void
  abandoned: () => boolean
  /** After the ledger took the ack: resolves once the commit recording it is done. */
  acked: () => Promise<void>
  /** After the message went back to its lane. */
  released: () => Promise<void>
  heartbeat: () => Promise<void>
  /** The next message of its key may be handed over (`Delivery.handOn`). */
  handedOn: () => void
}

/** One message handed over: its lane, its ledger and the subscription learn how it was settled, once. */
export function kafkaDelivery (p: Part, entry: Entry<KafkaMessage>, hooks: DeliveryHooks): Delivery {
  const { offset, item: message } = entry
  const id = `${p.tp}@${offset}`
  p.inHand.add(offset)
  let settled = false
  let waiting = false
  const done = (): void => {
    settled = true
    hooks.settled()
    p.inHand.delete(offset)
    if (waiting) hooks.waiting(false)
    waiting = false
  }
  return {
    topic: p.topic,
    value: message.value ?? Buffer.alloc(0),
    key: entry.key,
    headers: decodeHeaders(message.headers),
    // Counted before the last restart, for the lowest unsettled offset only; a release counts nothing.
    redeliveries: p.ledger.recoveredDeliveries(offset),
    id,
    ack: async () => {
      if (settled) return
      done()
      if (hooks.abandoned()) throw new BrokerError(`could not commit ${id} for group "${hooks.group}": the Kafka subscription was closed, the group will get the message again`, { retriable: true })
      p.flow.settled(entry)
      if (p.revoked) {
        hooks.logger.debug({ group: hooks.group, id }, 'not committing: the partition moved to another member, which will deliver the message again')
        return
      }
      p.ledger.ack(offset)
      p.mustLand = Math.max(p.mustLand, p.ledger.headOrNext())
      await hooks.acked()
    },
    release: async () => {
      if (settled) return
      done()
      // Its count goes back to what it was: handed over again, it is counted again.
      if (p.markedHead === offset) p.markedHead = -1
      // Handed over again from here (or, after a stop, fetched again from the committed offset, which is not past it).
      p.flow.returned(entry)
      await hooks.released()
    },
    keepAlive: async () => {
      try {
        await hooks.heartbeat()
      } catch (err) {
        // A rebalance or a restart answers the heartbeat with an error; kafkajs's loop rejoins.
        hooks.logger.debug({ group: hooks.group, err: kafkaReason(err, hooks.secrets) }, 'Kafka heartbeat failed')
      }
    },
    handOn: () => {
      if (settled) return
      p.flow.handOn(entry)
      hooks.handedOn()
    },
    waiting: (on) => {
      if (settled || waiting === on) return
      waiting = on
      hooks.waiting(on)
    }
  }
}
